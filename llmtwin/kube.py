"""The one way llmtwin builds a Kubernetes API client (operator, gateway, status reports from steps)."""

from __future__ import annotations

from kubernetes import client, config


def api_client(kubeconfig: str | None = None, pool_size: int | None = None) -> client.ApiClient:
    """A client from `kubeconfig` if given, else the pod's ServiceAccount, else ~/.kube/config."""
    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
    if pool_size:
        configuration.connection_pool_maxsize = pool_size  # callers that send requests in parallel
    return client.ApiClient(configuration)
