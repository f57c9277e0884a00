"""ReturnGuard: returns management and refund-risk service."""

__version__ = "0.1.0"
