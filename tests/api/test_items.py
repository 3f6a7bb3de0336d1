"""The items contract, row by row, over real HTTP against the Granian server."""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime
from decimal import Decimal

PROBLEM = "application/problem+json"


def exact(response) -> dict:
    """The JSON body with numbers kept exact, as a careful client would read it."""
    return json.loads(response.text, parse_float=Decimal)


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    return body


# --- POST /items -------------------------------------------------------------


def test_create_returns_201_with_location_etag_and_the_item(api, unique):
    response = api.post("/items", json={"name": f"pen {unique}", "price": 2.5})
    assert response.status_code == 201
    item = response.json()
    assert response.headers["Location"] == f"/items/{item['id']}"
    assert response.headers["ETag"] == '"1"'
    assert item["name"] == f"pen {unique}"
    assert item["version"] == 1


def test_create_applies_defaults_for_optional_fields(api):
    item = api.create()
    assert item["description"] is None
    assert item["quantity"] == 0


def post_text(api, body: str):
    """POST a body written by hand, so its numbers are exactly the ones typed."""
    return api.post("/items", data=body, headers={"Content-Type": "application/json"})


def test_price_comes_back_exactly_as_sent(api, unique):
    response = post_text(api, f'{{"name": "{unique}", "price": 19.99}}')
    assert exact(response)["price"] == Decimal("19.99")
    assert "19.99" in response.text


def test_largest_price_and_quantity_are_stored_exactly(api, unique):
    response = post_text(api, f'{{"name": "{unique}", "price": 9999999999.99, "quantity": 2147483647}}')
    item = exact(response)
    assert item["price"] == Decimal("9999999999.99")
    assert item["quantity"] == 2147483647


def test_timestamps_are_rfc3339_utc_and_equal_on_creation(api):
    item = api.create()
    created = datetime.fromisoformat(item["created_at"])
    assert created.utcoffset().total_seconds() == 0
    assert item["created_at"] == item["updated_at"]


def test_duplicate_name_is_409(api):
    item = api.create()
    assert_problem(api.post("/items", json={"name": item["name"], "price": 1}), 409)


def test_names_differing_only_in_case_are_distinct(api, unique):
    api.create(name=f"Case {unique}")
    api.create(name=f"case {unique}")


def test_create_without_json_content_type_is_415(api):
    assert_problem(api.post("/items", data='{"name": "x", "price": 1}',
                            headers={"Content-Type": "text/plain"}), 415)


def test_create_with_charset_parameter_is_accepted(api, unique):
    response = api.post("/items", data=json.dumps({"name": unique, "price": 1}),
                        headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 201


def test_malformed_json_is_400(api):
    assert_problem(api.post("/items", data="{name: 1", headers={"Content-Type": "application/json"}), 400)


def test_validation_errors_list_every_offending_field(api):
    response = api.post("/items", json={"name": "", "price": -1, "quantity": "x", "id": 5, "colour": "red"})
    body = assert_problem(response, 422)
    fields = {e["field"] for e in body["errors"]}
    assert fields == {"name", "price", "quantity", "id", "colour"}


def test_missing_required_fields_are_named(api):
    body = assert_problem(api.post("/items", json={}), 422)
    assert {e["field"] for e in body["errors"]} == {"name", "price"}


def test_more_than_two_decimal_places_is_422(api):
    assert_problem(api.post("/items", json={"name": "x", "price": 1.234}), 422)


# --- GET /items/<id> ---------------------------------------------------------


def test_get_returns_item_with_etag(api):
    item = api.create()
    response = api.get(f"/items/{item['id']}")
    assert response.status_code == 200
    assert response.json() == item
    assert response.headers["ETag"] == '"1"'


def test_if_none_match_with_current_etag_is_304(api):
    item = api.create()
    response = api.get(f"/items/{item['id']}", headers={"If-None-Match": '"1"'})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["ETag"] == '"1"'


def test_if_none_match_with_old_etag_is_200(api):
    item = api.create()
    api.patch(f"/items/{item['id']}", json={"quantity": 5})
    assert api.get(f"/items/{item['id']}", headers={"If-None-Match": '"1"'}).status_code == 200


def test_unknown_id_is_404_problem(api):
    assert_problem(api.get("/items/9223372036854775807"), 404)


def test_id_that_is_not_a_positive_bigint_is_404(api):
    for raw in ("0", "-1", "abc", "9223372036854775808", "1e3", "%20"):
        assert_problem(api.get(f"/items/{raw}"), 404)


# --- PUT /items/<id> ---------------------------------------------------------


def test_put_replaces_and_resets_omitted_optional_fields(api):
    item = api.create(description="old", quantity=7)
    response = api.put(f"/items/{item['id']}", json={"name": item["name"], "price": 3})
    assert response.status_code == 200
    replaced = response.json()
    assert replaced["description"] is None
    assert replaced["quantity"] == 0
    assert replaced["version"] == 2
    assert response.headers["ETag"] == '"2"'
    assert replaced["updated_at"] > item["updated_at"]
    assert replaced["created_at"] == item["created_at"]


def test_put_on_missing_item_is_404_not_upsert(api):
    assert_problem(api.put("/items/9223372036854775806", json={"name": "nope", "price": 1}), 404)


def test_put_to_a_taken_name_is_409(api):
    first, second = api.create(), api.create()
    assert_problem(api.put(f"/items/{second['id']}", json={"name": first["name"], "price": 1}), 409)


def test_put_with_matching_if_match_succeeds(api):
    item = api.create()
    response = api.put(f"/items/{item['id']}", json={"name": item["name"], "price": 2},
                       headers={"If-Match": '"1"'})
    assert response.status_code == 200


def test_put_with_stale_if_match_is_412_and_changes_nothing(api):
    item = api.create()
    response = api.put(f"/items/{item['id']}", json={"name": item["name"], "price": 2},
                       headers={"If-Match": '"7"'})
    assert_problem(response, 412)
    assert api.get(f"/items/{item['id']}").json() == item


def test_weak_etag_never_matches_if_match(api):
    item = api.create()
    response = api.put(f"/items/{item['id']}", json={"name": item["name"], "price": 2},
                       headers={"If-Match": 'W/"1"'})
    assert_problem(response, 412)


def test_if_match_star_matches_any_existing_item(api):
    item = api.create()
    assert api.patch(f"/items/{item['id']}", json={"quantity": 1},
                     headers={"If-Match": "*"}).status_code == 200


# --- PATCH /items/<id> -------------------------------------------------------


def test_patch_changes_only_fields_present(api):
    item = api.create(description="keep", quantity=4)
    response = api.patch(f"/items/{item['id']}", json={"price": 9.5},
                         headers={"Content-Type": "application/merge-patch+json"})
    assert response.status_code == 200
    patched = response.json()
    assert (patched["price"], patched["description"], patched["quantity"]) == (9.5, "keep", 4)
    assert patched["version"] == 2


def test_patch_with_null_description_clears_it(api):
    item = api.create(description="something")
    response = api.patch(f"/items/{item['id']}", data='{"description": null}',
                         headers={"Content-Type": "application/merge-patch+json"})
    assert response.json()["description"] is None


def test_patch_with_null_for_required_field_is_422(api):
    item = api.create()
    body = assert_problem(api.patch(f"/items/{item['id']}", json={"name": None, "price": None}), 422)
    assert {e["field"] for e in body["errors"]} == {"name", "price"}


def test_empty_patch_changes_nothing_and_keeps_version(api):
    item = api.create()
    response = api.patch(f"/items/{item['id']}", json={})
    assert response.status_code == 200
    assert response.json() == item
    assert response.headers["ETag"] == '"1"'


def test_empty_patch_with_stale_if_match_is_412(api):
    item = api.create()
    assert_problem(api.patch(f"/items/{item['id']}", json={}, headers={"If-Match": '"2"'}), 412)


def test_patch_on_missing_item_is_404(api):
    assert_problem(api.patch("/items/9223372036854775806", json={"quantity": 1}), 404)


def test_patch_to_a_taken_name_is_409(api):
    first, second = api.create(), api.create()
    assert_problem(api.patch(f"/items/{second['id']}", json={"name": first["name"]}), 409)


def test_patch_with_other_media_type_is_415_with_accept_patch(api):
    item = api.create()
    response = api.patch(f"/items/{item['id']}", data="[]",
                         headers={"Content-Type": "application/json-patch+json"})
    assert_problem(response, 415)
    assert "application/merge-patch+json" in response.headers["Accept-Patch"]


def test_patch_with_read_only_field_is_422(api):
    item = api.create()
    body = assert_problem(api.patch(f"/items/{item['id']}", json={"version": 9}), 422)
    assert body["errors"] == [{"field": "version", "message": "is read-only"}]


# --- DELETE /items/<id> ------------------------------------------------------


def test_delete_is_204_with_empty_body_then_404(api):
    item = api.create()
    response = api.delete(f"/items/{item['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(api.get(f"/items/{item['id']}"), 404)
    assert_problem(api.delete(f"/items/{item['id']}"), 404)


def test_delete_with_stale_if_match_is_412_and_keeps_the_item(api):
    item = api.create()
    assert_problem(api.delete(f"/items/{item['id']}", headers={"If-Match": '"2"'}), 412)
    assert api.get(f"/items/{item['id']}").status_code == 200


# --- Concurrency ---------------------------------------------------------------


def test_two_writers_with_the_same_etag_exactly_one_wins(api, server, api_key):
    for _ in range(10):
        item = api.create()
        barrier = threading.Barrier(2)
        statuses = []

        def write(quantity: int) -> None:
            from support import Api

            with Api(server.url, api_key) as session:
                barrier.wait()
                response = session.patch(f"/items/{item['id']}", json={"quantity": quantity},
                                         headers={"If-Match": '"1"'})
                statuses.append(response.status_code)

        threads = [threading.Thread(target=write, args=(q,)) for q in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses) == [200, 412]
        assert api.get(f"/items/{item['id']}").json()["version"] == 2


# --- Errors, health, request ids --------------------------------------------------


def test_unknown_path_is_404_problem(api):
    assert_problem(api.get("/nowhere"), 404)


def test_wrong_method_is_405_problem_with_allow(api):
    response = api.put("/items")
    assert_problem(response, 405)
    assert {"GET", "POST"} <= {m.strip() for m in response.headers["Allow"].split(",")}


def test_health_reports_app_and_database(api):
    response = api.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"app": "ok", "database": "ok"}}


def test_liveness_and_readiness_answer_200(api):
    assert api.get("/health/live").status_code == 200
    assert api.get("/health/ready").status_code == 200


def test_well_formed_request_id_is_echoed(api):
    response = api.get("/health/live", headers={"X-Request-ID": "abc.DEF-123_x"})
    assert response.headers["X-Request-ID"] == "abc.DEF-123_x"


def test_malformed_request_id_is_replaced(api):
    for bad in ("a b", "x" * 129, "<script>"):
        response = api.get("/health/live", headers={"X-Request-ID": bad})
        assert response.headers["X-Request-ID"] not in ("", bad)


def test_fresh_request_ids_are_well_formed_and_never_repeat(api):
    ids = [api.get("/health/live").headers["X-Request-ID"] for _ in range(50)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in ids)


def test_every_response_has_a_request_id(api):
    assert api.get("/nowhere").headers["X-Request-ID"]
    assert api.post("/items", json={}).headers["X-Request-ID"]


def test_a_doubled_slash_in_an_item_path_is_404_not_a_redirect(api):
    item = api.create()
    for path in (f"/items//{item['id']}", f"/items/%2F{item['id']}"):
        response = api.get(path, allow_redirects=False)
        assert_problem(response, 404)
