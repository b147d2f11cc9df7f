"""baoke (保客): after-sales customer retention for car brands and dealer groups."""

__version__ = "0.1.0"
