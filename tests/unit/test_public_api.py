import steproute

EXPECTED = {
    "BudgetExceeded", "CapabilityError", "CascadeAttempt",
    "ConfigError", "Decision", "DispatchError", "Hint", "LocalModelError", "StepCostTracker", "StepRouterMiddleware",
    "RoutedChatModel",
    "RoutedCompletion",
    "RouterConfig", "RoutingError", "StepKind", "StepRequest", "StepRouteError", "StepRouter",
    "StreamSummary", "Usage", "__version__", "load_config", "step",
    "ModelPatch", "route_factory", "route_init_chat_model",
    "ContextWindowExceeded", "MalformedResponse", "ProviderAuthError", "ProviderError", "ProviderRequestError",
    "RequestEncodingError", "StoreLockError",
}


def test_all_is_exactly_the_public_api():
    assert set(steproute.__all__) == EXPECTED
    assert len(steproute.__all__) == len(set(steproute.__all__))


def test_every_exported_error_is_a_steproute_error():
    for name in steproute.__all__:
        value = getattr(steproute, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, steproute.StepRouteError), name


def test_every_exported_name_resolves():
    for name in steproute.__all__:
        assert getattr(steproute, name) is not None


def test_unknown_attribute_raises():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        steproute.nope  # noqa: B018


def test_import_does_not_load_litellm_or_langchain():
    import subprocess
    import sys

    code = "import sys, steproute; print('litellm' in sys.modules, 'langchain_core.language_models' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_local_package_exports():
    import steproute.local

    assert set(steproute.local.__all__) == {
        "DEFAULT_TIERS", "LLAMA_CPP_PYTHON_VERSION", "MODELS", "LocalModel", "LocalServer", "LocalServers",
        "WheelPart", "build_is_valid", "cache_dir", "ensure_llama_server", "ensure_weights", "verify_weights"}
    for name in steproute.local.__all__:
        assert getattr(steproute.local, name) is not None


def test_evaluation_and_policies_exports():
    import steproute.evaluation
    import steproute.policies

    assert set(steproute.evaluation.__all__) == {
        "CascadeEvaluation", "CascadePoint", "evaluate_cascade", "replay_cascade", "train_cascade",
        "Curve", "DataError", "EvalRow", "Evaluation", "Loaded", "Outcome", "Outcomes", "Point", "Summary", "Target",
        "aiq", "apgr", "calibrate", "choose_tiers", "cpt", "evaluate", "from_decision_log", "load_gsm8k", "load_mmlu",
        "load_mt_bench", "load_routellm", "models_by_cost", "read_rows", "split_rows", "summarise", "sweep",
        "write_rows", "ece", "reliability", "ReliabilityBin"}
    assert set(steproute.policies.__all__) == {
        "BanditPolicy", "CascadePolicy", "ChainPolicy", "Choice", "FixedPolicy", "LLMRouterPolicy", "Policy", "PolicyContext",
        "RulesPolicy", "build_policy"}
    for module in (steproute.evaluation, steproute.policies):
        for name in module.__all__:
            assert getattr(module, name) is not None


def test_learned_policies_load_no_scikit_learn_and_make_no_network_call_at_import():
    """Running a classifier needs neither scikit-learn nor matplotlib; importing opens no socket."""
    import subprocess
    import sys

    code = ("import socket, sys\n"
            "def refuse(*a, **k): raise AssertionError('network access at import')\n"
            "socket.socket.connect = refuse\n"
            "import steproute, steproute.policies.classifier, steproute.policies.semantic, steproute.evaluation\n"
            "print('sklearn' in sys.modules, 'matplotlib' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False"]
