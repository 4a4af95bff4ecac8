from __future__ import annotations

import shutil
from typing import Any

import pytest

from tests.deploy.manifests import OVERLAYS, render


@pytest.fixture(params=OVERLAYS, ids=lambda p: p.name)
def objects(request: pytest.FixtureRequest) -> tuple[dict[str, Any], ...]:
    """The objects of each overlay (`kubectl kustomize`)."""
    if shutil.which("kubectl") is None:
        pytest.skip(
            "kubectl is not installed: deploy/kubernetes/ is not rendered or checked "
            "(CI machines have it)"
        )
    return render(request.param)
