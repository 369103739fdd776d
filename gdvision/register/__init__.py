"""Direct (photometric) image registration: motion models and the coarse-to-fine solver."""
