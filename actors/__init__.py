"""Ray actors: one per ticket category (the seats' single writer), one per event with a waiting room, and
the broadcaster."""

NAMESPACE = "ticketing"


def category_actor_name(event_id: int, category_id: int) -> str:
    """The name under which a category's actor appears in the Ray dashboard's Actors view."""
    return f"category:{event_id}:{category_id}"


def queue_actor_name(event_id: int) -> str:
    """The name of an event's waiting-room actor in the Ray dashboard."""
    return f"queue:{event_id}"
