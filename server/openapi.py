"""The OpenAPI document, generated from the endpoints' own declarations (core.endpoint).

Every route the router holds is described, or the document refuses to build: a route added
without a declaration fails at start-up and in the suite, never silently in production.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from core.auth import Role
from core.endpoint import Endpoint, declared, endpoint

# Routes that are not HTTP endpoints in OpenAPI's sense: the WebSockets (PROTOCOL.md, the
# pre-call probe) and static files.
UNDESCRIBED = re.compile(r"^/(ws|api/precall/probe|static(/.*)?)$")
_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")
_REF = "#/components/schemas/{model}"
ERROR_SCHEMA = {
    "type": "object", "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                       "field": {"type": "string"}}}},
}


def routes(app: web.Application) -> list[tuple[str, str, Endpoint]]:
    """(method, path, declaration) for every described route; undeclared ones raise."""
    found = []
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method == "HEAD" or UNDESCRIBED.match(path):
            continue
        spec = declared(route.handler)
        if spec is None:
            raise LookupError(f"{route.method} {path} has no @endpoint declaration")
        found.append((route.method, path, spec))
    return found


def document(app: web.Application, title: str = "Teleconsultation node") -> dict[str, Any]:
    described = routes(app)
    models = {m for _, _, spec in described for m in (spec.body, spec.query) if m is not None}
    refs, defs = models_json_schema([(m, "validation") for m in sorted(models, key=repr)],
                                    ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for method, path, spec in described:
        paths.setdefault(_PARAM.sub(r"{\1}", path), {})[method.lower()] = _operation(
            method, path, spec, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1",
                 "description": "Every refusal is a JSON error with a code. `x-roles` lists "
                                "the roles whose token may call an operation."},
        "paths": paths,
        "components": {
            "schemas": {**defs.get("$defs", {}), "Error": ERROR_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "bearerFormat": "JWT"}},
        },
    }


def _operation(method: str, path: str, spec: Endpoint,
               refs: dict[tuple[type[BaseModel], str], dict[str, Any]]) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True,
         "schema": {"type": "string", "minLength": 1, "maxLength": 64}}
        for name in _PARAM.findall(path)]
    if spec.query is not None:
        schema = spec.query.model_json_schema(ref_template=_REF)
        required = set(schema.get("required", []))
        params += [{"name": name, "in": "query", "required": name in required, "schema": prop}
                   for name, prop in schema.get("properties", {}).items()]
    if spec.query_token:
        params.append({"name": "token", "in": "query", "required": False,
                       "schema": {"type": "string"}})
    name = _PARAM.sub(r"\1", path).strip("/").replace("/", "_") or "root"
    op: dict[str, Any] = {
        "operationId": f"{method.lower()}_{name}",
        "summary": spec.summary,
        "parameters": params,
        "x-roles": [str(r) for r in spec.roles],
        "x-auth": spec.auth,
        "x-events": spec.events,
        "security": [{"bearer": []}] if spec.auth == "bearer" else [],
        "responses": {
            "default": {"description": "success, or a refusal",
                        "content": {"application/json": {
                            "schema": {"$ref": _REF.format(model="Error")}}}},
        },
    }
    if spec.body is not None:
        op["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": refs[(spec.body, "validation")]}}}
    elif spec.upload:
        op["requestBody"] = {"required": True, "content": {
            kind: {"schema": {"type": "string", "format": "binary"}} for kind in spec.upload}}
    return op


@endpoint(*Role)
async def openapi_json(request: web.Request) -> web.Response:
    """This document: what every endpoint accepts and which roles may call it."""
    return web.json_response(document(request.app))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/openapi.json", openapi_json)
