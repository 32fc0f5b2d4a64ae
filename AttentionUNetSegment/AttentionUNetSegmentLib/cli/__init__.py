"""`attention-unet-segment`: the headless command line; one module per sub-command, each only
turning its arguments into the options of the code that does the work (segment: service/)."""
