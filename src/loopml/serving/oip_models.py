"""Open Inference Protocol v2 REST wire models (JSON), and conversions from domain objects.

Requests are validated with these models after the JSON is parsed; responses on the hot
path are plain dicts built by the functions below (same shapes), which saves a pydantic
round-trip per request.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict

from loopml.serving.model_source import ServedModel
from loopml.serving.tensors import OutputTensor, TensorSpec, input_specs, output_specs

StrictInt = Annotated[int, Strict()]
Parameters = dict[str, Any]


class RequestInput(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: Annotated[str, Field(min_length=1, max_length=1000)]
    shape: list[StrictInt]
    datatype: str
    parameters: Parameters | None = None
    data: Any = None


class RequestOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    parameters: Parameters | None = None


class InferenceRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str | None = None
    parameters: Parameters | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadataResponse(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    parameters: Parameters | None = None


class ServerMetadataResponse(BaseModel):
    name: str
    version: str
    extensions: list[str]


_EVENT_TIME = {
    "description": "when the event happened: epoch seconds or ISO-8601 with a zone",
    "anyOf": [{"type": "number"}, {"type": "string"}],
}
_ROWS = {"type": "array", "items": {}}
# JSON Schemas of the bodies the server reads by hand, for the OpenAPI document.
BODY_SCHEMAS: dict[str, Any] = {
    "InvocationsRequest": {
        "type": "object",
        "description": "MLflow's scoring payload: exactly one of the four forms",
        "properties": {
            "dataframe_split": {
                "type": "object",
                "properties": {
                    "columns": {"type": "array", "items": {"type": "string"}},
                    "data": {"type": "array", "items": _ROWS},
                },
                "required": ["columns", "data"],
            },
            "dataframe_records": {"type": "array", "items": {"type": "object"}},
            "instances": _ROWS,
            "inputs": {"anyOf": [_ROWS, {"type": "object"}]},
            "event_time": _EVENT_TIME,
        },
    },
    "FeedbackRequest": {
        "type": "object",
        "properties": {
            "labels": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "request_id": {"type": "string"},
                        "row": {"type": "integer", "minimum": 0},
                        "label": {"anyOf": [{"type": "number"}, {"type": "string"}]},
                    },
                    "required": ["request_id", "label"],
                },
            }
        },
        "required": ["labels"],
    },
}


def _tensor(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape)}


def model_metadata(model: ServedModel, versions: list[str], ref: str, role: str) -> dict[str, Any]:
    return ModelMetadataResponse(
        name=model.name,
        versions=versions,
        platform=f"loopml-{model.flavor}",
        inputs=[MetadataTensor(**_tensor(s)) for s in input_specs(model)],
        outputs=[MetadataTensor(**_tensor(s)) for s in output_specs(model)],
        parameters={
            "version": str(model.version),
            "ref": ref,
            "role": role,
            "digest": model.digest,
            "classes": model.classes,
        },
    ).model_dump()


def infer_response(
    model: ServedModel, request_id: str, outputs: list[OutputTensor]
) -> dict[str, Any]:
    return {
        "model_name": model.name,
        "model_version": str(model.version),
        "id": request_id,
        "outputs": [
            {
                "name": t.name,
                "datatype": t.datatype,
                "shape": list(t.shape),
                "data": t.json_data(),
            }
            for t in outputs
        ],
    }
