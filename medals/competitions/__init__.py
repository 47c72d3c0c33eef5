"""Competition-specific pieces (data adapters) that recipes name; importing registers them."""
