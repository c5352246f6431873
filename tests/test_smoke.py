def test_hello(http):
    r = http.get("/api")
    assert r.status_code == 200
    assert r.json() == {"message": "Hello API"}
