"""HTTP routes: thin functions over typed dependencies and one service call each."""
