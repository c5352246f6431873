from tests.helpers import create_event, register


def test_hold_then_buy_then_cancel(http):
    org = register(http, "organizer")
    buyer = register(http)
    event = create_event(http, org, seats=5)
    cat = event["ticketCategories"][0]
    r = http.post("/api/holds", json={"eventId": event["idEvent"], "categoryId": cat["id"], "quantity": 2},
                  headers=buyer["headers"])
    assert r.status_code == 201, r.text
    hold = r.json()
    assert hold["availableTickets"] == 3
    r = http.post("/api/orders/with-lock", json={"eventId": event["idEvent"], "categoryId": cat["id"],
                                                 "quantity": 2, "lockId": hold["lockId"]}, headers=buyer["headers"])
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "confirmed" and order["totalPrice"] == "100.00"
    tickets = http.get(f"/api/events/{event['idEvent']}/tickets").json()
    assert tickets[0]["availableSeats"] == 3 and tickets[0]["reservedSeats"] == 2
    r = http.post(f"/api/orders/{order['id']}/cancel", headers=buyer["headers"])
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "cancelled"
    assert http.get(f"/api/events/{event['idEvent']}/tickets").json()[0]["availableSeats"] == 5
