"""Plans: the model and its JSON form, the pure planner, and the renderers."""
