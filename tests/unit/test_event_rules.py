"""Who may create, see, edit and delete an event: pure rules of domain/events.py, no Ray."""
from __future__ import annotations

import pytest

from domain.auth import Principal
from domain.errors import Forbidden, NotFound
from domain.events import check_may_create, check_owner, check_visible

ORGANIZER = Principal(1, "olga", "organizer")
OTHER_ORGANIZER = Principal(2, "oscar", "organizer")
ASSISTANT = Principal(3, "ana", "assistant")


def test_organizer_may_create():
    check_may_create(ORGANIZER)


def test_assistant_may_not_create():
    with pytest.raises(Forbidden) as caught:
        check_may_create(ASSISTANT)
    assert caught.value.body() == {
        "statusCode": 403, "message": "Only organizers can create events", "error": "Forbidden"}


@pytest.mark.parametrize("viewer", [None, ORGANIZER, OTHER_ORGANIZER, ASSISTANT])
def test_active_event_is_visible_to_everyone(viewer):
    check_visible(5, True, True, ORGANIZER.user_id, viewer)


@pytest.mark.parametrize("viewer", [None, OTHER_ORGANIZER, ASSISTANT])
def test_inactive_event_is_not_found_for_anyone_but_its_creator(viewer):
    with pytest.raises(NotFound) as caught:
        check_visible(5, True, False, ORGANIZER.user_id, viewer)
    assert caught.value.body() == {"statusCode": 404, "message": "Event with ID 5 not found", "error": "Not Found"}


def test_inactive_event_is_visible_to_its_creator():
    check_visible(5, True, False, ORGANIZER.user_id, ORGANIZER)


@pytest.mark.parametrize("viewer", [None, ORGANIZER])
def test_missing_event_is_not_found(viewer):
    with pytest.raises(NotFound):
        check_visible(9, False, False, 0, viewer)


@pytest.mark.parametrize("action", ["edit", "delete"])
def test_creator_owns_the_event(action):
    check_owner(ORGANIZER, ORGANIZER.user_id, action)


@pytest.mark.parametrize("caller", [OTHER_ORGANIZER, ASSISTANT])
@pytest.mark.parametrize("action", ["edit", "delete"])
def test_others_may_not_edit_or_delete(caller, action):
    with pytest.raises(Forbidden) as caught:
        check_owner(caller, ORGANIZER.user_id, action)
    assert caught.value.message == f"You can only {action} events that you created"
    assert caught.value.status == 403
