"""Domain logic of the API; every database query lives here, always scoped to a team."""
