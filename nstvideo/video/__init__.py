"""Video renders, one module per step of the data's one-way path:

    render (stylize_video) -> plan -> engines (in process, local pool; cluster: Ray)
        -> unit runners (optimize: frames; keyframes) -> stores -> assemble

Nothing here imports a module to its left in that line."""
