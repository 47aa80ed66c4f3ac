import pytest


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """Folder with a small byte-level BPE tokenizer (<s>=1, </s>=2)."""
    from instmix.synth.testing import build_tokenizer

    return build_tokenizer(str(tmp_path_factory.mktemp("tok")))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """Folder with a random 2-layer MistralForCausalLM and its tokenizer."""
    from instmix.synth.testing import build_model

    return build_model(str(tmp_path_factory.mktemp("model")))


@pytest.fixture
def encoder(tiny_tokenizer):
    from instmix.synth.prompt import PromptEncoder
    from instmix.synth.tokenizer import SynthTokenizer

    return PromptEncoder(SynthTokenizer(tiny_tokenizer), 200)
