"""Figures (matplotlib) and the demo that runs the whole product on one phantom."""
