"""What the user wrote: the pipeline file parsed into steps, the graph of steps,
the `when` expression language, text renderings of the graph."""
