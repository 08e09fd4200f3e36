"""Logging Client SDK users in: who a caller of POST /client/token is, and the login token it gets.

refusals      why a login is refused: the codes counted in /metrics, and the exception that carries one (no JWT here)
user_tokens   the login token itself: its claims (pure) and its RS256 signature with the application's key
issuer_keys   an OpenID issuer's signing keys, fetched and cached, refetched for a new key id at most once a minute
id_tokens     checking an ID token against those keys, the issuer, the audience and the clock

Only refusals is imported when CLIENT_AUTH is unset: the rest loads PyJWT and cryptography.
"""
