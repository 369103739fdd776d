"""Separable filters equal to OpenCV's (Gaussian, Sobel, Scharr, Laplacian), Canny and edge maps."""
