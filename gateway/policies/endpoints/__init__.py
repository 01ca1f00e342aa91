"""Managed dedicated Inference Endpoints: the fleet-shared record of each endpoint (store), one poller per
fleet, the wake-up and resume claims, the idle action, and the stage that routes calls by the endpoint's
state. The HTTP side (control-plane client, `EndpointUpstream`) is in `gateway/upstream/endpoints/`."""
