"""Ray Serve deployments: the HTTP gateway (ingress) and the auth, users, events, orders and realtime
services behind it. `deployments.app:build_app` assembles them; serve_config.yaml points at it."""
