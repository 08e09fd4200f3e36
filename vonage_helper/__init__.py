"""The Vonage client helper behind `flask call`, `flask token` and `flask webhooks`: the SDK's REST client.

Only the command line imports it (see cli.py), so no worker serving webhooks loads the SDK's client.

    clients    credentials, the two kinds of client, and Vonage's errors as one line each
    calls      placing a call through the destination policy
    tokens     Client SDK login tokens
    webhooks   pointing the application's voice webhooks at this server
    commands   the click commands
"""
