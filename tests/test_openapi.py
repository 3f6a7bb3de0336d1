"""The OpenAPI document: valid 3.1, and describing exactly the routes the app has."""

from __future__ import annotations

import re

from openapi_spec_validator import validate

from app import openapi
from app.schemas import ItemIn, ListQuery


def test_document_is_valid_openapi_3_1(api):
    document = api.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_document_describes_every_route_of_the_app_and_no_other():
    from flask import Flask

    from app import health, items

    app = Flask(__name__)
    for module in (health, items, openapi):
        app.register_blueprint(module.bp)
    routes = {
        (re.sub(r"<(\w+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, ops in openapi.document()["paths"].items() for method in ops}
    assert documented == routes


def test_request_schemas_are_the_validation_models():
    schemas = openapi.document()["components"]["schemas"]
    assert set(schemas["ItemIn"]["properties"]) == set(ItemIn.model_fields)
    assert schemas["ItemIn"]["additionalProperties"] is False


def test_list_parameters_are_the_query_model():
    get_items = openapi.document()["paths"]["/items"]["get"]
    names = {p["name"] for p in get_items["parameters"] if "name" in p}
    assert names == set(ListQuery.model_fields)


def test_errors_are_documented_as_problem_details():
    post = openapi.document()["paths"]["/items"]["post"]
    for status in ("400", "409", "413", "415", "422", "503"):
        assert "application/problem+json" in post["responses"][status]["content"]
