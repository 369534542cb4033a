"""From runs to a submission: blend weights, the RowId,Location file, its checks."""
