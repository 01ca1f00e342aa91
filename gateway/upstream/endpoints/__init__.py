"""Managed dedicated Inference Endpoints, upstream side: the control-plane client, the endpoint object,
the engine -> dialect table, and `EndpointUpstream`. The state kept across replicas and the decisions
(wake, resume, park, pause when idle) are policies: `gateway/policies/endpoints/`."""
