"""Plans: the snapshot and its fetch, the pure planner, the model and its file, the renderers,
and the ``plan`` command."""
