"""A small Flask app. The login route is what Codeflow is asked to write."""

from flask import Flask, jsonify, request, session

import config
from models import User, db

app = Flask(__name__)
app.config.from_object(config)
db.init_app(app)


@app.route("/register", methods=["POST"])
def register():
    data = request.get_json()
    if User.find_by_email(data["email"]):
        return jsonify(error="email already registered"), 409
    user = User(email=data["email"].lower(), name=data["name"])
    user.set_password(data["password"])
    db.session.add(user)
    db.session.commit()
    return jsonify(user.to_dict()), 201


@app.route("/login", methods=["POST"])
def login():
    data = request.get_json()
    user = 


@app.route("/logout", methods=["POST"])
def logout():
    session.pop("user_id", None)
    return jsonify(ok=True)
