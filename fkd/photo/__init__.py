"""Any photo or video, outside the competition: faces found, framed as the training faces, their
keypoints predicted and drawn (`fkd face`), the framing calibrated (`fkd calibrate`)."""
