"""Plan rule sets: versioned, immutable documents that draft treatment plans and check them."""
