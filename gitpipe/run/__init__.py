"""Running a pipeline: staleness, the planner (the one decision), the session that
restores and publishes, the runner, events and their listeners (lineage,
summaries), the checks before anything is written."""
