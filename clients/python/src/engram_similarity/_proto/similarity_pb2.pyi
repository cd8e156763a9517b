from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Placement(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLACEMENT_AUTO: _ClassVar[Placement]
    PLACEMENT_CPU_ONLY: _ClassVar[Placement]
    PLACEMENT_GPU_ONLY: _ClassVar[Placement]

class Backend(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BACKEND_UNSPECIFIED: _ClassVar[Backend]
    BACKEND_CPU: _ClassVar[Backend]
    BACKEND_GPU: _ClassVar[Backend]
    BACKEND_MIXED: _ClassVar[Backend]
PLACEMENT_AUTO: Placement
PLACEMENT_CPU_ONLY: Placement
PLACEMENT_GPU_ONLY: Placement
BACKEND_UNSPECIFIED: Backend
BACKEND_CPU: Backend
BACKEND_GPU: Backend
BACKEND_MIXED: Backend

class Matrix(_message.Message):
    __slots__ = ("rows", "cols", "values")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    rows: int
    cols: int
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, rows: _Optional[int] = ..., cols: _Optional[int] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class BatchCosineRequest(_message.Message):
    __slots__ = ("queries", "targets", "top_k", "min_score", "placement")
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    queries: Matrix
    targets: Matrix
    top_k: int
    min_score: float
    placement: Placement
    def __init__(self, queries: _Optional[_Union[Matrix, _Mapping]] = ..., targets: _Optional[_Union[Matrix, _Mapping]] = ..., top_k: _Optional[int] = ..., min_score: _Optional[float] = ..., placement: _Optional[_Union[Placement, str]] = ...) -> None: ...

class TopK(_message.Message):
    __slots__ = ("indices", "scores")
    INDICES_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    indices: _containers.RepeatedScalarFieldContainer[int]
    scores: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, indices: _Optional[_Iterable[int]] = ..., scores: _Optional[_Iterable[float]] = ...) -> None: ...

class BatchCosineResponse(_message.Message):
    __slots__ = ("scores", "top", "report")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedScalarFieldContainer[float]
    top: _containers.RepeatedCompositeFieldContainer[TopK]
    report: ExecutionReport
    def __init__(self, scores: _Optional[_Iterable[float]] = ..., top: _Optional[_Iterable[_Union[TopK, _Mapping]]] = ..., report: _Optional[_Union[ExecutionReport, _Mapping]] = ...) -> None: ...

class Graph(_message.Message):
    __slots__ = ("num_nodes", "row_offsets", "targets", "weights")
    NUM_NODES_FIELD_NUMBER: _ClassVar[int]
    ROW_OFFSETS_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    num_nodes: int
    row_offsets: _containers.RepeatedScalarFieldContainer[int]
    targets: _containers.RepeatedScalarFieldContainer[int]
    weights: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, num_nodes: _Optional[int] = ..., row_offsets: _Optional[_Iterable[int]] = ..., targets: _Optional[_Iterable[int]] = ..., weights: _Optional[_Iterable[float]] = ...) -> None: ...

class Seed(_message.Message):
    __slots__ = ("node", "activation")
    NODE_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    node: int
    activation: float
    def __init__(self, node: _Optional[int] = ..., activation: _Optional[float] = ...) -> None: ...

class SpreadParams(_message.Message):
    __slots__ = ("max_hops", "exponential_rate", "power_law_exponent", "linear_slope", "constant_factor", "threshold", "hop_thresholds", "max_activation")
    MAX_HOPS_FIELD_NUMBER: _ClassVar[int]
    EXPONENTIAL_RATE_FIELD_NUMBER: _ClassVar[int]
    POWER_LAW_EXPONENT_FIELD_NUMBER: _ClassVar[int]
    LINEAR_SLOPE_FIELD_NUMBER: _ClassVar[int]
    CONSTANT_FACTOR_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    HOP_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    MAX_ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    max_hops: int
    exponential_rate: float
    power_law_exponent: float
    linear_slope: float
    constant_factor: float
    threshold: float
    hop_thresholds: _containers.RepeatedScalarFieldContainer[float]
    max_activation: float
    def __init__(self, max_hops: _Optional[int] = ..., exponential_rate: _Optional[float] = ..., power_law_exponent: _Optional[float] = ..., linear_slope: _Optional[float] = ..., constant_factor: _Optional[float] = ..., threshold: _Optional[float] = ..., hop_thresholds: _Optional[_Iterable[float]] = ..., max_activation: _Optional[float] = ...) -> None: ...

class SpreadRequest(_message.Message):
    __slots__ = ("graph", "seeds", "params", "top_k", "placement", "graph_name", "min_version", "seed_nodes", "result_nodes")
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    GRAPH_NAME_FIELD_NUMBER: _ClassVar[int]
    MIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    SEED_NODES_FIELD_NUMBER: _ClassVar[int]
    RESULT_NODES_FIELD_NUMBER: _ClassVar[int]
    graph: Graph
    seeds: _containers.RepeatedCompositeFieldContainer[Seed]
    params: SpreadParams
    top_k: int
    placement: Placement
    graph_name: str
    min_version: int
    seed_nodes: NodeFilter
    result_nodes: NodeFilter
    def __init__(self, graph: _Optional[_Union[Graph, _Mapping]] = ..., seeds: _Optional[_Iterable[_Union[Seed, _Mapping]]] = ..., params: _Optional[_Union[SpreadParams, _Mapping]] = ..., top_k: _Optional[int] = ..., placement: _Optional[_Union[Placement, str]] = ..., graph_name: _Optional[str] = ..., min_version: _Optional[int] = ..., seed_nodes: _Optional[_Union[NodeFilter, _Mapping]] = ..., result_nodes: _Optional[_Union[NodeFilter, _Mapping]] = ...) -> None: ...

class NodeFilter(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, nodes: _Optional[_Iterable[int]] = ...) -> None: ...

class SpreadResponse(_message.Message):
    __slots__ = ("activation", "top_nodes", "top_activation", "hops", "edges_traversed", "report", "graph_version", "seeds_ignored")
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    TOP_NODES_FIELD_NUMBER: _ClassVar[int]
    TOP_ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    EDGES_TRAVERSED_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    GRAPH_VERSION_FIELD_NUMBER: _ClassVar[int]
    SEEDS_IGNORED_FIELD_NUMBER: _ClassVar[int]
    activation: _containers.RepeatedScalarFieldContainer[float]
    top_nodes: _containers.RepeatedScalarFieldContainer[int]
    top_activation: _containers.RepeatedScalarFieldContainer[float]
    hops: int
    edges_traversed: int
    report: ExecutionReport
    graph_version: int
    seeds_ignored: int
    def __init__(self, activation: _Optional[_Iterable[float]] = ..., top_nodes: _Optional[_Iterable[int]] = ..., top_activation: _Optional[_Iterable[float]] = ..., hops: _Optional[int] = ..., edges_traversed: _Optional[int] = ..., report: _Optional[_Union[ExecutionReport, _Mapping]] = ..., graph_version: _Optional[int] = ..., seeds_ignored: _Optional[int] = ...) -> None: ...

class ExecutionReport(_message.Message):
    __slots__ = ("backend", "decided_by", "fallback_reason", "chunks", "compute_seconds")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    backend: Backend
    decided_by: str
    fallback_reason: str
    chunks: int
    compute_seconds: float
    def __init__(self, backend: _Optional[_Union[Backend, str]] = ..., decided_by: _Optional[str] = ..., fallback_reason: _Optional[str] = ..., chunks: _Optional[int] = ..., compute_seconds: _Optional[float] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BackendStats(_message.Message):
    __slots__ = ("operation", "backend", "requests", "work_items", "compute_seconds_total", "p50_seconds", "p99_seconds", "requests_per_second", "work_items_per_second", "success_rate", "success_outcomes")
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    WORK_ITEMS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_SECONDS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    P50_SECONDS_FIELD_NUMBER: _ClassVar[int]
    P99_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    WORK_ITEMS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    operation: str
    backend: Backend
    requests: int
    work_items: int
    compute_seconds_total: float
    p50_seconds: float
    p99_seconds: float
    requests_per_second: float
    work_items_per_second: float
    success_rate: float
    success_outcomes: int
    def __init__(self, operation: _Optional[str] = ..., backend: _Optional[_Union[Backend, str]] = ..., requests: _Optional[int] = ..., work_items: _Optional[int] = ..., compute_seconds_total: _Optional[float] = ..., p50_seconds: _Optional[float] = ..., p99_seconds: _Optional[float] = ..., requests_per_second: _Optional[float] = ..., work_items_per_second: _Optional[float] = ..., success_rate: _Optional[float] = ..., success_outcomes: _Optional[int] = ...) -> None: ...

class MethodStats(_message.Message):
    __slots__ = ("method", "code", "count")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    method: str
    code: str
    count: int
    def __init__(self, method: _Optional[str] = ..., code: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class OperationStats(_message.Message):
    __slots__ = ("operation", "requests", "requests_in_window", "fallbacks", "fallback_rate", "ooms", "oom_retries", "ooms_per_minute")
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_IN_WINDOW_FIELD_NUMBER: _ClassVar[int]
    FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_RATE_FIELD_NUMBER: _ClassVar[int]
    OOMS_FIELD_NUMBER: _ClassVar[int]
    OOM_RETRIES_FIELD_NUMBER: _ClassVar[int]
    OOMS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    operation: str
    requests: int
    requests_in_window: int
    fallbacks: int
    fallback_rate: float
    ooms: int
    oom_retries: int
    ooms_per_minute: float
    def __init__(self, operation: _Optional[str] = ..., requests: _Optional[int] = ..., requests_in_window: _Optional[int] = ..., fallbacks: _Optional[int] = ..., fallback_rate: _Optional[float] = ..., ooms: _Optional[int] = ..., oom_retries: _Optional[int] = ..., ooms_per_minute: _Optional[float] = ...) -> None: ...

class FallbackStats(_message.Message):
    __slots__ = ("operation", "reason", "count", "count_in_window", "rate")
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    COUNT_IN_WINDOW_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    operation: str
    reason: str
    count: int
    count_in_window: int
    rate: float
    def __init__(self, operation: _Optional[str] = ..., reason: _Optional[str] = ..., count: _Optional[int] = ..., count_in_window: _Optional[int] = ..., rate: _Optional[float] = ...) -> None: ...

class SpeedupStats(_message.Message):
    __slots__ = ("operation", "size_bucket", "min_work", "speedup", "cpu_seconds_per_unit", "gpu_seconds_per_unit", "cpu_samples", "gpu_samples")
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    SIZE_BUCKET_FIELD_NUMBER: _ClassVar[int]
    MIN_WORK_FIELD_NUMBER: _ClassVar[int]
    SPEEDUP_FIELD_NUMBER: _ClassVar[int]
    CPU_SECONDS_PER_UNIT_FIELD_NUMBER: _ClassVar[int]
    GPU_SECONDS_PER_UNIT_FIELD_NUMBER: _ClassVar[int]
    CPU_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    GPU_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    operation: str
    size_bucket: str
    min_work: int
    speedup: float
    cpu_seconds_per_unit: float
    gpu_seconds_per_unit: float
    cpu_samples: int
    gpu_samples: int
    def __init__(self, operation: _Optional[str] = ..., size_bucket: _Optional[str] = ..., min_work: _Optional[int] = ..., speedup: _Optional[float] = ..., cpu_seconds_per_unit: _Optional[float] = ..., gpu_seconds_per_unit: _Optional[float] = ..., cpu_samples: _Optional[int] = ..., gpu_samples: _Optional[int] = ...) -> None: ...

class BreakerStats(_message.Message):
    __slots__ = ("state", "retry_after_seconds", "consecutive_failures", "window_calls", "window_failures", "consecutive_trips", "last_error")
    STATE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_CALLS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FAILURES_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_TRIPS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    state: str
    retry_after_seconds: float
    consecutive_failures: int
    window_calls: int
    window_failures: int
    consecutive_trips: int
    last_error: str
    def __init__(self, state: _Optional[str] = ..., retry_after_seconds: _Optional[float] = ..., consecutive_failures: _Optional[int] = ..., window_calls: _Optional[int] = ..., window_failures: _Optional[int] = ..., consecutive_trips: _Optional[int] = ..., last_error: _Optional[str] = ...) -> None: ...

class GpuMemoryStats(_message.Message):
    __slots__ = ("has_reading", "free_bytes", "total_bytes", "limit_bytes", "reading_age_seconds", "stale", "high_pressure", "query_failures", "last_query_error", "ledger_enabled", "ledger_reserved_bytes", "ledger_capacity_bytes", "ledger_waits", "ledger_refusals")
    HAS_READING_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    READING_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    HIGH_PRESSURE_FIELD_NUMBER: _ClassVar[int]
    QUERY_FAILURES_FIELD_NUMBER: _ClassVar[int]
    LAST_QUERY_ERROR_FIELD_NUMBER: _ClassVar[int]
    LEDGER_ENABLED_FIELD_NUMBER: _ClassVar[int]
    LEDGER_RESERVED_BYTES_FIELD_NUMBER: _ClassVar[int]
    LEDGER_CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    LEDGER_WAITS_FIELD_NUMBER: _ClassVar[int]
    LEDGER_REFUSALS_FIELD_NUMBER: _ClassVar[int]
    has_reading: bool
    free_bytes: int
    total_bytes: int
    limit_bytes: int
    reading_age_seconds: float
    stale: bool
    high_pressure: bool
    query_failures: int
    last_query_error: str
    ledger_enabled: bool
    ledger_reserved_bytes: int
    ledger_capacity_bytes: int
    ledger_waits: int
    ledger_refusals: int
    def __init__(self, has_reading: _Optional[bool] = ..., free_bytes: _Optional[int] = ..., total_bytes: _Optional[int] = ..., limit_bytes: _Optional[int] = ..., reading_age_seconds: _Optional[float] = ..., stale: _Optional[bool] = ..., high_pressure: _Optional[bool] = ..., query_failures: _Optional[int] = ..., last_query_error: _Optional[str] = ..., ledger_enabled: _Optional[bool] = ..., ledger_reserved_bytes: _Optional[int] = ..., ledger_capacity_bytes: _Optional[int] = ..., ledger_waits: _Optional[int] = ..., ledger_refusals: _Optional[int] = ...) -> None: ...

class RejectionStats(_message.Message):
    __slots__ = ("reason", "count")
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    reason: str
    count: int
    def __init__(self, reason: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class ReadinessStats(_message.Message):
    __slots__ = ("serving", "phase", "reason", "gpu_required", "cpu_only")
    SERVING_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    GPU_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    CPU_ONLY_FIELD_NUMBER: _ClassVar[int]
    serving: bool
    phase: str
    reason: str
    gpu_required: bool
    cpu_only: bool
    def __init__(self, serving: _Optional[bool] = ..., phase: _Optional[str] = ..., reason: _Optional[str] = ..., gpu_required: _Optional[bool] = ..., cpu_only: _Optional[bool] = ...) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("version", "uptime_seconds", "gpu_available", "methods", "backends", "inflight_requests", "window_seconds", "operations", "fallbacks", "speedups", "breaker", "gpu_memory", "readiness", "gpu_name", "last_gpu_error", "last_gpu_error_age_seconds", "queued_work_items", "rejections", "catalog", "cost_models")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    GPU_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    INFLIGHT_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    SPEEDUPS_FIELD_NUMBER: _ClassVar[int]
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    GPU_MEMORY_FIELD_NUMBER: _ClassVar[int]
    READINESS_FIELD_NUMBER: _ClassVar[int]
    GPU_NAME_FIELD_NUMBER: _ClassVar[int]
    LAST_GPU_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_GPU_ERROR_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_WORK_ITEMS_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    CATALOG_FIELD_NUMBER: _ClassVar[int]
    COST_MODELS_FIELD_NUMBER: _ClassVar[int]
    version: str
    uptime_seconds: float
    gpu_available: bool
    methods: _containers.RepeatedCompositeFieldContainer[MethodStats]
    backends: _containers.RepeatedCompositeFieldContainer[BackendStats]
    inflight_requests: int
    window_seconds: float
    operations: _containers.RepeatedCompositeFieldContainer[OperationStats]
    fallbacks: _containers.RepeatedCompositeFieldContainer[FallbackStats]
    speedups: _containers.RepeatedCompositeFieldContainer[SpeedupStats]
    breaker: BreakerStats
    gpu_memory: GpuMemoryStats
    readiness: ReadinessStats
    gpu_name: str
    last_gpu_error: str
    last_gpu_error_age_seconds: float
    queued_work_items: int
    rejections: _containers.RepeatedCompositeFieldContainer[RejectionStats]
    catalog: CatalogStats
    cost_models: _containers.RepeatedCompositeFieldContainer[CostModelStats]
    def __init__(self, version: _Optional[str] = ..., uptime_seconds: _Optional[float] = ..., gpu_available: _Optional[bool] = ..., methods: _Optional[_Iterable[_Union[MethodStats, _Mapping]]] = ..., backends: _Optional[_Iterable[_Union[BackendStats, _Mapping]]] = ..., inflight_requests: _Optional[int] = ..., window_seconds: _Optional[float] = ..., operations: _Optional[_Iterable[_Union[OperationStats, _Mapping]]] = ..., fallbacks: _Optional[_Iterable[_Union[FallbackStats, _Mapping]]] = ..., speedups: _Optional[_Iterable[_Union[SpeedupStats, _Mapping]]] = ..., breaker: _Optional[_Union[BreakerStats, _Mapping]] = ..., gpu_memory: _Optional[_Union[GpuMemoryStats, _Mapping]] = ..., readiness: _Optional[_Union[ReadinessStats, _Mapping]] = ..., gpu_name: _Optional[str] = ..., last_gpu_error: _Optional[str] = ..., last_gpu_error_age_seconds: _Optional[float] = ..., queued_work_items: _Optional[int] = ..., rejections: _Optional[_Iterable[_Union[RejectionStats, _Mapping]]] = ..., catalog: _Optional[_Union[CatalogStats, _Mapping]] = ..., cost_models: _Optional[_Iterable[_Union[CostModelStats, _Mapping]]] = ...) -> None: ...

class CostModelStats(_message.Message):
    __slots__ = ("operation", "backend", "samples", "usable", "fixed_seconds", "seconds_per_byte", "seconds_per_unit", "relative_error", "min_work", "max_work", "prior")
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    USABLE_FIELD_NUMBER: _ClassVar[int]
    FIXED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_PER_BYTE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_PER_UNIT_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_ERROR_FIELD_NUMBER: _ClassVar[int]
    MIN_WORK_FIELD_NUMBER: _ClassVar[int]
    MAX_WORK_FIELD_NUMBER: _ClassVar[int]
    PRIOR_FIELD_NUMBER: _ClassVar[int]
    operation: str
    backend: str
    samples: int
    usable: bool
    fixed_seconds: float
    seconds_per_byte: float
    seconds_per_unit: float
    relative_error: float
    min_work: int
    max_work: int
    prior: bool
    def __init__(self, operation: _Optional[str] = ..., backend: _Optional[str] = ..., samples: _Optional[int] = ..., usable: _Optional[bool] = ..., fixed_seconds: _Optional[float] = ..., seconds_per_byte: _Optional[float] = ..., seconds_per_unit: _Optional[float] = ..., relative_error: _Optional[float] = ..., min_work: _Optional[int] = ..., max_work: _Optional[int] = ..., prior: _Optional[bool] = ...) -> None: ...

class CatalogStats(_message.Message):
    __slots__ = ("address", "connected", "state_seconds", "revision", "error")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    STATE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    address: str
    connected: bool
    state_seconds: float
    revision: int
    error: str
    def __init__(self, address: _Optional[str] = ..., connected: _Optional[bool] = ..., state_seconds: _Optional[float] = ..., revision: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class CollectionInfo(_message.Message):
    __slots__ = ("name", "dimension", "count", "bytes", "metadata", "residency", "load_state", "version", "segments", "has_ids", "source", "error", "tombstones")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    RESIDENCY_FIELD_NUMBER: _ClassVar[int]
    LOAD_STATE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    HAS_IDS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TOMBSTONES_FIELD_NUMBER: _ClassVar[int]
    name: str
    dimension: int
    count: int
    bytes: int
    metadata: _containers.ScalarMap[str, str]
    residency: str
    load_state: str
    version: int
    segments: int
    has_ids: bool
    source: str
    error: str
    tombstones: int
    def __init__(self, name: _Optional[str] = ..., dimension: _Optional[int] = ..., count: _Optional[int] = ..., bytes: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., residency: _Optional[str] = ..., load_state: _Optional[str] = ..., version: _Optional[int] = ..., segments: _Optional[int] = ..., has_ids: _Optional[bool] = ..., source: _Optional[str] = ..., error: _Optional[str] = ..., tombstones: _Optional[int] = ...) -> None: ...

class CreateCollectionRequest(_message.Message):
    __slots__ = ("name", "dimension", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    dimension: int
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., dimension: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("name", "create", "dimension", "total_rows", "with_ids", "metadata", "idempotency_key")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATE_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ROWS_FIELD_NUMBER: _ClassVar[int]
    WITH_IDS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    name: str
    create: bool
    dimension: int
    total_rows: int
    with_ids: bool
    metadata: _containers.ScalarMap[str, str]
    idempotency_key: str
    def __init__(self, name: _Optional[str] = ..., create: _Optional[bool] = ..., dimension: _Optional[int] = ..., total_rows: _Optional[int] = ..., with_ids: _Optional[bool] = ..., metadata: _Optional[_Mapping[str, str]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("vectors", "ids", "labels")
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    vectors: _containers.RepeatedScalarFieldContainer[float]
    ids: _containers.RepeatedScalarFieldContainer[int]
    labels: _containers.RepeatedCompositeFieldContainer[RowLabels]
    def __init__(self, vectors: _Optional[_Iterable[float]] = ..., ids: _Optional[_Iterable[int]] = ..., labels: _Optional[_Iterable[_Union[RowLabels, _Mapping]]] = ...) -> None: ...

class RowLabels(_message.Message):
    __slots__ = ("tags", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TAGS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.RepeatedCompositeFieldContainer[Tag]
    attributes: _containers.ScalarMap[str, float]
    def __init__(self, tags: _Optional[_Iterable[_Union[Tag, _Mapping]]] = ..., attributes: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Tag(_message.Message):
    __slots__ = ("key", "text", "integer")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    INTEGER_FIELD_NUMBER: _ClassVar[int]
    key: str
    text: str
    integer: int
    def __init__(self, key: _Optional[str] = ..., text: _Optional[str] = ..., integer: _Optional[int] = ...) -> None: ...

class TagValue(_message.Message):
    __slots__ = ("text", "integer")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    INTEGER_FIELD_NUMBER: _ClassVar[int]
    text: str
    integer: int
    def __init__(self, text: _Optional[str] = ..., integer: _Optional[int] = ...) -> None: ...

class UploadCollectionRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    chunk: UploadChunk
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[_Union[UploadChunk, _Mapping]] = ...) -> None: ...

class UploadCollectionResponse(_message.Message):
    __slots__ = ("collection", "rows_uploaded", "replayed")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ROWS_UPLOADED_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    collection: CollectionInfo
    rows_uploaded: int
    replayed: bool
    def __init__(self, collection: _Optional[_Union[CollectionInfo, _Mapping]] = ..., rows_uploaded: _Optional[int] = ..., replayed: _Optional[bool] = ...) -> None: ...

class DeleteCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteCollectionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCollectionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCollectionsResponse(_message.Message):
    __slots__ = ("collections",)
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[CollectionInfo]
    def __init__(self, collections: _Optional[_Iterable[_Union[CollectionInfo, _Mapping]]] = ...) -> None: ...

class DescribeCollectionRequest(_message.Message):
    __slots__ = ("name", "min_version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    min_version: int
    def __init__(self, name: _Optional[str] = ..., min_version: _Optional[int] = ...) -> None: ...

class SearchCollectionRequest(_message.Message):
    __slots__ = ("collection", "queries", "top_k", "min_score", "placement", "min_version", "filter")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    MIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    collection: str
    queries: Matrix
    top_k: int
    min_score: float
    placement: Placement
    min_version: int
    filter: RowFilter
    def __init__(self, collection: _Optional[str] = ..., queries: _Optional[_Union[Matrix, _Mapping]] = ..., top_k: _Optional[int] = ..., min_score: _Optional[float] = ..., placement: _Optional[_Union[Placement, str]] = ..., min_version: _Optional[int] = ..., filter: _Optional[_Union[RowFilter, _Mapping]] = ...) -> None: ...

class RowFilter(_message.Message):
    __slots__ = ("allow_ids", "deny_ids", "where")
    ALLOW_IDS_FIELD_NUMBER: _ClassVar[int]
    DENY_IDS_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    allow_ids: _containers.RepeatedScalarFieldContainer[int]
    deny_ids: _containers.RepeatedScalarFieldContainer[int]
    where: Predicate
    def __init__(self, allow_ids: _Optional[_Iterable[int]] = ..., deny_ids: _Optional[_Iterable[int]] = ..., where: _Optional[_Union[Predicate, _Mapping]] = ...) -> None: ...

class Predicate(_message.Message):
    __slots__ = ("tag", "range", "all", "any")
    TAG_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    ANY_FIELD_NUMBER: _ClassVar[int]
    NOT_FIELD_NUMBER: _ClassVar[int]
    tag: TagMatch
    range: AttributeRange
    all: PredicateList
    any: PredicateList
    def __init__(self, tag: _Optional[_Union[TagMatch, _Mapping]] = ..., range: _Optional[_Union[AttributeRange, _Mapping]] = ..., all: _Optional[_Union[PredicateList, _Mapping]] = ..., any: _Optional[_Union[PredicateList, _Mapping]] = ..., **kwargs) -> None: ...

class TagMatch(_message.Message):
    __slots__ = ("key", "values")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    key: str
    values: _containers.RepeatedCompositeFieldContainer[TagValue]
    def __init__(self, key: _Optional[str] = ..., values: _Optional[_Iterable[_Union[TagValue, _Mapping]]] = ...) -> None: ...

class AttributeRange(_message.Message):
    __slots__ = ("name", "min", "max", "min_exclusive", "max_exclusive")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MIN_EXCLUSIVE_FIELD_NUMBER: _ClassVar[int]
    MAX_EXCLUSIVE_FIELD_NUMBER: _ClassVar[int]
    name: str
    min: float
    max: float
    min_exclusive: bool
    max_exclusive: bool
    def __init__(self, name: _Optional[str] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., min_exclusive: _Optional[bool] = ..., max_exclusive: _Optional[bool] = ...) -> None: ...

class PredicateList(_message.Message):
    __slots__ = ("predicates",)
    PREDICATES_FIELD_NUMBER: _ClassVar[int]
    predicates: _containers.RepeatedCompositeFieldContainer[Predicate]
    def __init__(self, predicates: _Optional[_Iterable[_Union[Predicate, _Mapping]]] = ...) -> None: ...

class SearchCollectionResponse(_message.Message):
    __slots__ = ("results", "scores", "ids", "report", "batch_queries", "batch_requests", "queue_seconds", "collection_version", "rows_searched")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    BATCH_QUERIES_FIELD_NUMBER: _ClassVar[int]
    BATCH_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_VERSION_FIELD_NUMBER: _ClassVar[int]
    ROWS_SEARCHED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CollectionHits]
    scores: _containers.RepeatedScalarFieldContainer[float]
    ids: _containers.RepeatedScalarFieldContainer[int]
    report: ExecutionReport
    batch_queries: int
    batch_requests: int
    queue_seconds: float
    collection_version: int
    rows_searched: int
    def __init__(self, results: _Optional[_Iterable[_Union[CollectionHits, _Mapping]]] = ..., scores: _Optional[_Iterable[float]] = ..., ids: _Optional[_Iterable[int]] = ..., report: _Optional[_Union[ExecutionReport, _Mapping]] = ..., batch_queries: _Optional[int] = ..., batch_requests: _Optional[int] = ..., queue_seconds: _Optional[float] = ..., collection_version: _Optional[int] = ..., rows_searched: _Optional[int] = ...) -> None: ...

class UpsertRowsRequest(_message.Message):
    __slots__ = ("collection", "vectors", "ids", "labels", "idempotency_key", "expected_version")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    vectors: Matrix
    ids: _containers.RepeatedScalarFieldContainer[int]
    labels: _containers.RepeatedCompositeFieldContainer[RowLabels]
    idempotency_key: str
    expected_version: int
    def __init__(self, collection: _Optional[str] = ..., vectors: _Optional[_Union[Matrix, _Mapping]] = ..., ids: _Optional[_Iterable[int]] = ..., labels: _Optional[_Iterable[_Union[RowLabels, _Mapping]]] = ..., idempotency_key: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class UpsertRowsResponse(_message.Message):
    __slots__ = ("collection", "inserted", "replaced", "replayed")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    INSERTED_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    collection: CollectionInfo
    inserted: int
    replaced: int
    replayed: bool
    def __init__(self, collection: _Optional[_Union[CollectionInfo, _Mapping]] = ..., inserted: _Optional[int] = ..., replaced: _Optional[int] = ..., replayed: _Optional[bool] = ...) -> None: ...

class DeleteRowsRequest(_message.Message):
    __slots__ = ("collection", "ids", "idempotency_key", "expected_version")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[int]
    idempotency_key: str
    expected_version: int
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[int]] = ..., idempotency_key: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class DeleteRowsResponse(_message.Message):
    __slots__ = ("collection", "deleted", "not_found", "not_found_ids", "replayed")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_IDS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    collection: CollectionInfo
    deleted: int
    not_found: int
    not_found_ids: _containers.RepeatedScalarFieldContainer[int]
    replayed: bool
    def __init__(self, collection: _Optional[_Union[CollectionInfo, _Mapping]] = ..., deleted: _Optional[int] = ..., not_found: _Optional[int] = ..., not_found_ids: _Optional[_Iterable[int]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class CollectionHits(_message.Message):
    __slots__ = ("ids", "scores", "rows")
    IDS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    scores: _containers.RepeatedScalarFieldContainer[float]
    rows: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ids: _Optional[_Iterable[int]] = ..., scores: _Optional[_Iterable[float]] = ..., rows: _Optional[_Iterable[int]] = ...) -> None: ...

class GraphInfo(_message.Message):
    __slots__ = ("name", "num_nodes", "num_edges", "bytes", "residency", "load_state", "source", "version", "pending_changes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NUM_NODES_FIELD_NUMBER: _ClassVar[int]
    NUM_EDGES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    RESIDENCY_FIELD_NUMBER: _ClassVar[int]
    LOAD_STATE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PENDING_CHANGES_FIELD_NUMBER: _ClassVar[int]
    name: str
    num_nodes: int
    num_edges: int
    bytes: int
    residency: str
    load_state: str
    source: str
    version: int
    pending_changes: int
    def __init__(self, name: _Optional[str] = ..., num_nodes: _Optional[int] = ..., num_edges: _Optional[int] = ..., bytes: _Optional[int] = ..., residency: _Optional[str] = ..., load_state: _Optional[str] = ..., source: _Optional[str] = ..., version: _Optional[int] = ..., pending_changes: _Optional[int] = ...) -> None: ...

class PutGraphHeader(_message.Message):
    __slots__ = ("name", "num_nodes", "num_edges")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NUM_NODES_FIELD_NUMBER: _ClassVar[int]
    NUM_EDGES_FIELD_NUMBER: _ClassVar[int]
    name: str
    num_nodes: int
    num_edges: int
    def __init__(self, name: _Optional[str] = ..., num_nodes: _Optional[int] = ..., num_edges: _Optional[int] = ...) -> None: ...

class PutGraphChunk(_message.Message):
    __slots__ = ("row_offsets", "targets", "weights")
    ROW_OFFSETS_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    row_offsets: _containers.RepeatedScalarFieldContainer[int]
    targets: _containers.RepeatedScalarFieldContainer[int]
    weights: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, row_offsets: _Optional[_Iterable[int]] = ..., targets: _Optional[_Iterable[int]] = ..., weights: _Optional[_Iterable[float]] = ...) -> None: ...

class PutGraphRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: PutGraphHeader
    chunk: PutGraphChunk
    def __init__(self, header: _Optional[_Union[PutGraphHeader, _Mapping]] = ..., chunk: _Optional[_Union[PutGraphChunk, _Mapping]] = ...) -> None: ...

class DeleteGraphRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteGraphResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListGraphsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListGraphsResponse(_message.Message):
    __slots__ = ("graphs",)
    GRAPHS_FIELD_NUMBER: _ClassVar[int]
    graphs: _containers.RepeatedCompositeFieldContainer[GraphInfo]
    def __init__(self, graphs: _Optional[_Iterable[_Union[GraphInfo, _Mapping]]] = ...) -> None: ...

class DescribeGraphRequest(_message.Message):
    __slots__ = ("name", "min_version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    min_version: int
    def __init__(self, name: _Optional[str] = ..., min_version: _Optional[int] = ...) -> None: ...

class EdgeRef(_message.Message):
    __slots__ = ("source", "target")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    source: int
    target: int
    def __init__(self, source: _Optional[int] = ..., target: _Optional[int] = ...) -> None: ...

class WeightedEdge(_message.Message):
    __slots__ = ("source", "target", "weight")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    source: int
    target: int
    weight: float
    def __init__(self, source: _Optional[int] = ..., target: _Optional[int] = ..., weight: _Optional[float] = ...) -> None: ...

class UpdateGraphRequest(_message.Message):
    __slots__ = ("name", "add_nodes", "remove_edges", "set_weights", "add_edges", "idempotency_key", "expected_version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADD_NODES_FIELD_NUMBER: _ClassVar[int]
    REMOVE_EDGES_FIELD_NUMBER: _ClassVar[int]
    SET_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    ADD_EDGES_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    add_nodes: int
    remove_edges: _containers.RepeatedCompositeFieldContainer[EdgeRef]
    set_weights: _containers.RepeatedCompositeFieldContainer[WeightedEdge]
    add_edges: _containers.RepeatedCompositeFieldContainer[WeightedEdge]
    idempotency_key: str
    expected_version: int
    def __init__(self, name: _Optional[str] = ..., add_nodes: _Optional[int] = ..., remove_edges: _Optional[_Iterable[_Union[EdgeRef, _Mapping]]] = ..., set_weights: _Optional[_Iterable[_Union[WeightedEdge, _Mapping]]] = ..., add_edges: _Optional[_Iterable[_Union[WeightedEdge, _Mapping]]] = ..., idempotency_key: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class UpdateGraphResponse(_message.Message):
    __slots__ = ("graph", "edges_removed", "edges_reweighted", "edges_added", "not_found", "not_found_edges", "replayed")
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    EDGES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    EDGES_REWEIGHTED_FIELD_NUMBER: _ClassVar[int]
    EDGES_ADDED_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_EDGES_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    graph: GraphInfo
    edges_removed: int
    edges_reweighted: int
    edges_added: int
    not_found: int
    not_found_edges: _containers.RepeatedCompositeFieldContainer[EdgeRef]
    replayed: bool
    def __init__(self, graph: _Optional[_Union[GraphInfo, _Mapping]] = ..., edges_removed: _Optional[int] = ..., edges_reweighted: _Optional[int] = ..., edges_added: _Optional[int] = ..., not_found: _Optional[int] = ..., not_found_edges: _Optional[_Iterable[_Union[EdgeRef, _Mapping]]] = ..., replayed: _Optional[bool] = ...) -> None: ...
