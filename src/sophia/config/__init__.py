"""Configuration: ``sophia.yaml`` plus the deployment guide's environment variables, validated by pydantic.

Precedence, lowest first: the model defaults (the guide's production numbers), ``sophia.yaml``, environment
variables. A bad value anywhere becomes a ``ConfigError`` whose message names the field or variable; the CLI turns
it into exit code 2 before anything is started or changed.

``fields`` holds the building blocks, ``policy`` a profile's policies, ``sections`` the other sections,
``settings`` the whole, ``load`` the reading and merging; the names the rest of the project uses are here.
"""

from sophia.config.fields import (
    PLATFORM_NAMES,
    SERVICE_NAME_PATTERN,
    STAGE_NAMES,
    ConfigError,
    ServiceKind,
    ServiceSpec,
    check_version,
)
from sophia.config.load import DEFAULT_CONFIG_FILE, load_config
from sophia.config.policy import (
    AnalysisPolicy,
    Budgets,
    CanaryPolicy,
    HealthPolicy,
    Profile,
    ReadinessPolicy,
    RequestSpec,
    RolloutPolicy,
    SessionPolicy,
    SyntheticsPolicy,
    TrafficPolicy,
)
from sophia.config.sections import (
    GatewayConfig,
    ImageConfig,
    KubernetesPlatformConfig,
    LintTestConfig,
    LocalPlatformConfig,
    MetricsConfig,
    NeonConfig,
    NotifyConfig,
    RehearsalConfig,
    ReleaseConfig,
    ResourcesConfig,
)
from sophia.config.settings import Settings

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "PLATFORM_NAMES",
    "SERVICE_NAME_PATTERN",
    "STAGE_NAMES",
    "AnalysisPolicy",
    "Budgets",
    "CanaryPolicy",
    "ConfigError",
    "GatewayConfig",
    "HealthPolicy",
    "ImageConfig",
    "KubernetesPlatformConfig",
    "LintTestConfig",
    "LocalPlatformConfig",
    "MetricsConfig",
    "NeonConfig",
    "NotifyConfig",
    "Profile",
    "ReadinessPolicy",
    "RehearsalConfig",
    "ReleaseConfig",
    "RequestSpec",
    "ResourcesConfig",
    "RolloutPolicy",
    "ServiceKind",
    "ServiceSpec",
    "SessionPolicy",
    "Settings",
    "SyntheticsPolicy",
    "TrafficPolicy",
    "check_version",
    "load_config",
]
