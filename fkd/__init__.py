"""fkd: a toolkit for Kaggle's Facial Keypoints Detection competition."""


__version__ = "0.1.0"
