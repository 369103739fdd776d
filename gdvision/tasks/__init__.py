"""One module per command: inputs -> solver -> outputs -> record. The only code that writes result files."""
