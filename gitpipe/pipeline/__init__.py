"""What the user wrote: the pipeline file parsed into the step model, the graph of
steps, the `when` expression language, text renderings of the graph.

    spec         the public face: load_cached (files, cached) and parse (text); the
                 model and its helpers re-exported
    parser       TOML tables -> Pipeline; its parts: checks (typed reads, errors),
                 step_fields (one step's table), params (-p, ${...} put in), paths
                 (the path rules), matrix (expansions), nested (pipeline files)
    model        Pipeline, Step, PathSpec, ... (frozen dataclasses)
    refs         the ${...} references, as text
    expr         `when` conditions
    graph        edges, order, cycles; render: the graph as text, Mermaid, dot, JSON
"""
