"""wastesort: waste photos in, gated and served classifier out."""
