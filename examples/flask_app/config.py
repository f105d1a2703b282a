"""Settings for the sample app."""

import os

SECRET_KEY = os.environ.get("SECRET_KEY", "dev-only-secret")
SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL", "sqlite:///app.db")
SQLALCHEMY_TRACK_MODIFICATIONS = False
