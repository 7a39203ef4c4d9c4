"""Field delineation: model heads to instances to polygons, and field-level metrics."""
