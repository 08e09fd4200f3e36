"""The Vonage client helper behind `flask setup`, `flask call`, `flask token`, `flask webhooks`, `flask sign`,
`flask users` and `flask push`.

Only the command line imports it (see commands/cli.py), serve.py's main process when it needs it, and a worker only
with CLIENT_CREATE_USERS=on (edge/login_users.py), so no worker serving webhooks loads the SDK's REST client. errors, ngrok, backups, env_file and sign use no SDK.

    errors     a failure as one line and an exit code
    clients    credentials, the two kinds of client, and Vonage's errors as one line each
    calls      placing a call through the destination policy
    tokens     Client SDK login tokens
    users      the application's Client SDK users (the Users API): list, create, delete, sync
    push       the push credentials Vonage rings a backgrounded app with, checked, then uploaded
    ngrok      finding this server's public URL from a running ngrok agent
    backups    the record of the webhooks an application had before they were pointed here
    webhooks   pointing the application's voice webhooks at this server, showing them, putting them back; the
               one place the Applications API is spoken (applications_api)
    auto       AUTO_WEBHOOKS=ngrok: the webhooks follow the tunnel while `make run` serves
    sign       `flask sign`: requests signed as Vonage signs webhooks
    setup      `flask setup`: a new application for this project, or the check that it has one
    key_pair   the application's key pair, made here, and its private key's file (0600 from the start)
    env_file   setting variables in .env, every other line kept
    numbers    the account's numbers: finding one, linking it to the application
    commands   the other click commands
"""
