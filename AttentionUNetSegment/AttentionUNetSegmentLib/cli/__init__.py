"""`attention-unet-segment`: the headless command line; one module per sub-command."""
