# Lets `flask <command>` find the app from the project folder (inside .venv).
FLASK_APP=app:create_app
