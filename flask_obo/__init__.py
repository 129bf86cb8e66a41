"""flask-obo: protected Flask web APIs that call downstream APIs on behalf of the user."""

__version__ = "0.1.0"
