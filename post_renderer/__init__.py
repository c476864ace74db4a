"""helm-egress: a Helm post-renderer that adds correct Istio egress configuration."""

__version__ = "0.1.0"
