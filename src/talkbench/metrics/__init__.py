"""Metrics: SSIM, LPIPS, CSIM, LMD, CPBD, FID, FVD, MSI, bitrate and codebook utilisation, one
module each, each equal to its reference implementation, run in one pass per clip by the
evaluation engine and recorded with the protocol they were measured under."""
