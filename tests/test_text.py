"""Text (theory section 12) beyond the machines: the token networks' receptive fields and equivariance, the
shared-randomness unmasking sampler, the text metrics, the free baselines, and a tiny token model trained by
train.py's machinery and evaluated by evaluate.py's."""
import json
import math

import pytest
import torch

from ablate.data.tokens import TokenDataset, encode
from ablate.evaluation.text import FrequencyDenoiser, chance_agreement, tv_distance
from ablate.metrics.text import text_scores
from ablate.models import BackboneConfig, build_backbone, describe
from ablate.sampling import inverse_cdf, unmask

V, L = 5, 10


def influence(net, i, trials=3):
    """The positions whose token changes the logits at position i at all (by substitution, from random inputs, in
    float64: outside the receptive field the change is exactly zero, inside it may be small but is not)."""
    g = torch.Generator().manual_seed(0)
    seen = set()
    a = torch.tensor([0.5], dtype=torch.float64)
    for _ in range(trials):
        x = torch.randint(0, V + 1, (1, L), generator=g)
        base = net(x, a)[0, :, i]
        for j in range(L):
            y = x.clone()
            y[0, j] = (y[0, j] + 1) % (V + 1)
            if not torch.equal(net(y, a)[0, :, i], base):
                seen.add(j)
    return seen


@pytest.mark.parametrize("config,radius", [
    (BackboneConfig(name="token_resnet", depth=2, width=8), 2),
    (BackboneConfig(name="token_resnet", depth=3, width=8, padding="circular"), 3),
    (BackboneConfig(name="token_transformer", depth=2, width=8, heads=2, window=1), 2),
    (BackboneConfig(name="token_transformer", depth=1, width=8, heads=2), None)])
def test_token_networks_see_exactly_their_receptive_field(config, radius):
    torch.manual_seed(0)
    net = build_backbone(config, V, length=L).double().eval()
    for p in net.parameters():  # zero-initialised biases would hide positions: give every weight a value
        torch.nn.init.normal_(p, std=0.3)
    rf = net.receptive_field()
    assert describe(config).receptive_field == rf
    i = 5
    seen = influence(net, i)
    if radius is None:
        assert rf is None and seen == set(range(L))
    else:
        assert rf == 2 * radius + 1
        circular = config.padding == "circular"
        expect = {(i + o) % L for o in range(-radius, radius + 1)} if circular else \
            {j for j in range(L) if abs(j - i) <= radius}
        assert seen == expect


def test_circular_token_resnet_and_windowed_attention_commute_with_shifts():
    torch.manual_seed(1)
    x = torch.randint(0, V + 1, (3, L))
    a = torch.rand(3)
    conv = build_backbone(BackboneConfig(name="token_resnet", depth=2, width=8, padding="circular"), V, length=L)
    torch.testing.assert_close(conv(torch.roll(x, 3, 1), a), torch.roll(conv(x, a), 3, 2), rtol=0, atol=1e-5)
    attn = build_backbone(BackboneConfig(name="token_transformer", depth=2, width=8, heads=2, window=2), V, length=L)
    # away from the ends (zeros: the window stops there), a shift of the input shifts the output
    out, shifted = attn(x, a), attn(torch.roll(x, 1, 1), a)
    torch.testing.assert_close(shifted[..., 5:L - 4], out[..., 4:L - 5], rtol=0, atol=1e-5)


class Table:
    """A denoiser whose posterior is the one-hot of a fixed sequence per row (a known answer for the sampler)."""

    vocab_size = V

    def __init__(self, target):
        self.target = target

    def denoise(self, x, alpha):
        rows = self.target[: len(x)] if len(x) == len(self.target) else self.target[0].expand(len(x), -1)
        return torch.nn.functional.one_hot(rows, V).transpose(1, 2).float()


def test_unmasking_returns_a_certain_denoisers_sequence_and_shares_its_randomness():
    target = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3, 4]])
    out = unmask(Table(target), [7], L, steps=4)
    assert torch.equal(out.tokens, target) and out.trajectory.shape == (4, 1, L)
    assert (out.trajectory[0] == V).all()  # every position masked at the first step
    # the same seed reveals the same positions in the same order, whatever the denoiser says
    other = unmask(Table(torch.full((1, L), 3)), [7], L, steps=4)
    assert torch.equal(other.trajectory == V, out.trajectory == V)
    # same seed, same sample; another seed, another order
    assert torch.equal(unmask(Table(target), [7], L, steps=4).trajectory, out.trajectory)
    assert not torch.equal(unmask(Table(target), [8], L, steps=4).trajectory == V, out.trajectory == V)


def test_the_reveal_probability_follows_the_schedule():
    seeds = list(range(400))
    out = unmask(Table(torch.zeros(1, L, dtype=torch.long)), seeds, L, steps=4, schedule="linear")
    # linear: alpha(1) = 0, alpha(0.75) = 0.25: the first step reveals a quarter of the positions
    revealed = (out.trajectory[1] != V).double().mean()
    assert abs(float(revealed) - 0.25) < 4 * math.sqrt(0.25 * 0.75 / (400 * L))
    # from t = 0.75 to 0.5: (0.5 - 0.25) / (1 - 0.25) of the rest
    rest = (out.trajectory[1] == V)
    frac = ((out.trajectory[2] != V) & rest).double().sum() / rest.double().sum()
    assert abs(float(frac) - 1 / 3) < 4 * math.sqrt((1 / 3) * (2 / 3) / float(rest.sum()))


def test_inverse_cdf_known_answers():
    probs = torch.tensor([[[0.2], [0.5], [0.3]]])  # [1, V=3, L=1]
    draws = [int(inverse_cdf(probs, torch.tensor([[g]]))) for g in (0.0, 0.19, 0.2, 0.69, 0.71, 0.999)]
    assert draws == [0, 0, 1, 1, 2, 2]


def words_data():
    vocab = tuple("abc.")
    train = encode(["ab", "abc", "ba", "cab"], vocab, 4)
    held = encode(["cb", "ca"], vocab, 4)
    return TokenDataset("words", train, held, vocab)


def test_text_metrics_known_answers():
    data = words_data()
    samples = encode(["ab", "cb", "bc", "aaaa", "cab"], data.vocab, 4)
    s = text_scores(data, samples, k=2)
    assert s["validity"] == pytest.approx(3 / 5)  # ab, cb (held out), cab
    assert s["creativity"] == pytest.approx(1 / 5)  # cb
    assert s["memorisation"] == pytest.approx(2 / 5)  # ab, cab
    # not words: "bc" (windows b-c, c-., .-. all occur in training) is locally right; "aaaa" (a-a never does) is not
    assert s["artefact_rate"] == pytest.approx(1 / 5)
    brackets = TokenDataset("brackets", encode(["()", "(())"], tuple("()."), 6), encode(["()()"], tuple("()."), 6),
                            tuple("()."))
    b = text_scores(brackets, encode(["()()", "(()", "())", "(())"], brackets.vocab, 6), k=2)
    assert b["balance_rate"] == pytest.approx(0.5) and b["creativity"] == pytest.approx(0.25)
    assert b["break_position"] == pytest.approx((3 / 3 + 2 / 3) / 2)  # "(()" open at its end; "())" at index 2


def test_free_baselines_and_chance_known_answers():
    data = words_data()
    uni = FrequencyDenoiser(data.train, 4, "unigram", smoothing=0.0)
    counts = torch.bincount(data.train.flatten(), minlength=4).double()
    x = torch.full((1, 4), 4)
    torch.testing.assert_close(uni.denoise(x, 0.0)[0, :, 0].double(), counts / counts.sum(), rtol=0, atol=1e-6)
    bi = FrequencyDenoiser(data.train, 4, "bigram", smoothing=0.0)
    x = torch.tensor([[0, 4, 4, 4]])  # 'a' observed: position 1 follows it
    after_a = bi.denoise(x, 0.5)[0, :, 1]
    torch.testing.assert_close(after_a, torch.tensor([0.0, 0.75, 0.0, 0.25]))  # 'a' precedes b three times, '.' once
    first = bi.denoise(torch.full((1, 4), 4), 0.0)[0, :, 0]  # position 0 follows the start symbol
    torch.testing.assert_close(first, torch.tensor([0.5, 0.25, 0.25, 0.0]))
    f = counts / counts.sum()
    assert chance_agreement(data.train, 4) == pytest.approx(float((f * f).sum()))
    p = torch.tensor([[[1.0, 0.5]], [[0.0, 0.5]]]).permute(1, 0, 2)  # [1, V=2, L=2]
    q = torch.tensor([[[0.0, 0.5]], [[1.0, 0.5]]]).permute(1, 0, 2)
    assert tv_distance(p, q, torch.tensor([[True, True]])) == pytest.approx(0.5)


def test_a_tiny_token_model_trains_and_evaluates(tmp_path):
    from evaluate import main as evaluate_main
    from ablate.training import load_config, run

    config = load_config(None, ["data.name=words", "data.n=200", "model.name=token_resnet", "model.depth=2",
                                "model.width=16", "max_steps=40", "wandb.mode=disabled", "progress=false",
                                f"out={tmp_path}", "name=tiny", "sample_seeds=4", "sample_steps=6"])
    result = run(config)
    assert (result.run_dir / "samples" / "final.txt").read_text().count("\n") == 4
    evaluate_main([str(result.checkpoint), "seeds=6", "calibration_seeds=2", "steps=6", "--quiet"])
    summary = json.loads((result.run_dir / "evaluation" / "agreement.json").read_text())
    assert summary["kind"] == "tokens" and summary["receptive_field"] == 5
    assert set(summary["machines"]) == {"unigram", "bigram", "ideal", "ls_zeros", "ls_circular", "els_zeros",
                                        "els_circular"}
    for name, m in summary["machines"].items():
        assert 0.0 <= m["agreement_ci95"][0] <= m["agreement"] <= m["agreement_ci95"][1] <= 1.0
        assert len(m["agreement_per_seed"]) == 6 and len(m["tv_per_step"]) == 6
    for name, c in summary["calibration"].items():
        assert len(c["k"]) == 6 and set(c["k"]) <= set(c["candidates"])
    assert "<mark>" in (result.run_dir / "evaluation" / "samples.html").read_text() or all(
        m["agreement"] == 1.0 for m in summary["machines"].values())
    with pytest.raises(ValueError, match="holds token sequences but model.name='resnet'"):
        run(load_config(None, ["data.name=words", "data.n=50", "max_steps=2", "wandb.mode=disabled",
                               f"out={tmp_path}", "name=bad"]))


def test_oracle_and_train_sweeps_run_on_words(in_tmp):
    from ablate.sweep import load_definition
    from ablate.sweep.workers import run_sweep
    from conftest import write_definition

    oracle = load_definition(write_definition(in_tmp, {
        "name": "words_oracle", "kind": "oracle", "description": "tiny", "data": {"name": "words", "n": 300},
        "space": {"k": {"choice": [1, 3]}, "smoothing": {"choice": [0.0, 1.0]}, "boundary": {"choice": ["circular"]}},
        "objectives": {"validity": "maximize", "creativity": "maximize"}, "sampler": {"name": "grid", "seed": 0},
        "seeds": 6, "steps": 6}))
    study = run_sweep(oracle, progress=False)
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert len(done) == 4 and all(0.0 <= t.user_attrs["validity"] <= 1.0 for t in done)
    assert all((in_tmp / "runs/sweeps/words_oracle/samples").glob("*.txt"))
    train_path = write_definition(in_tmp, {
        "name": "words_train", "kind": "train", "description": "tiny", "data": {"name": "words", "n": 200},
        "architectures": {"conv": {"name": "token_resnet", "depth": 1}}, "fixed": {"width": 8, "max_steps": 20},
        "objectives": {"validity": "maximize", "els_zeros_agreement": "maximize"},
        "sampler": {"name": "grid", "seed": 0}, "seeds": 4, "steps": 6})
    (t,) = run_sweep(load_definition(train_path), progress=False).get_trials()
    assert t.state.name == "COMPLETE" and t.user_attrs["receptive_field"] == 3
    assert 0.0 <= t.user_attrs["els_zeros_agreement_low"] <= t.user_attrs["els_zeros_agreement"] <= 1.0
    assert len(t.user_attrs["els_zeros_k"].split()) == 6
    from ablate.design.describe import describe_network, format_description

    d = describe_network(t.user_attrs["checkpoint"])
    assert d["oracle"] == {"machine": "els", "boundary": "zeros", "k": 3} and "k = 3" in format_description(d)
    from ablate.design.text import predict_text

    text = predict_text(train_path).read_text()  # the theory machine against the trained network, same seeds
    assert "| conv | ELS zeros k = 3 |" in text and "Spearman's rho over the 1 architectures" in text


def test_the_discrete_machine_a_token_denoiser_is_predicted_to_be():
    from ablate.design.mapping import predict_token_oracle

    for depth, padding, k in ((1, "zeros", 3), (3, "circular", 7), (5, "zeros", 11), (8, "circular", 11)):
        g, oracle = predict_token_oracle({"name": "token_resnet", "depth": depth, "padding": padding}, 12, 27)
        assert (oracle.machine, oracle.boundary, oracle.patch_size, oracle.vocab_size) == ("els", padding, k, 27)
    g, oracle = predict_token_oracle({"name": "token_transformer", "depth": 2}, 12, 27)
    assert g.receptive_field is None and oracle.patch_size == 23  # global: the largest window on 12 tokens
    g, oracle = predict_token_oracle({"name": "token_transformer", "depth": 2, "window": 2}, 12, 27)
    assert oracle.patch_size == 9
    with pytest.raises(ValueError, match="denoises images or signals"):
        predict_token_oracle({"name": "resnet"}, 12, 27)


def test_a_sample_is_its_text_up_to_the_end_symbol():
    data = words_data()
    raw = encode(["ab", "ba"], data.vocab, 4)
    raw[0, 3] = 2  # "ab.c": a symbol after the end is not part of the sample
    s = text_scores(data, raw, k=2)
    assert s["memorisation"] == 1.0 and s["validity"] == 1.0
    with pytest.raises(ValueError, match="mask token"):
        text_scores(data, torch.full((1, 4), 4), k=2)


def test_text_agreement_reads_samples_as_texts():
    from ablate.design.text import text_agreement

    data = words_data()
    a = encode(["ab", "ba"], data.vocab, 4)
    b = a.clone()
    b[0, 3] = 2  # after "ab"'s end symbol: not part of the sample, so not a disagreement
    b[1, 1] = 1  # "bb" for "ba": one of the 4 positions differs
    assert text_agreement(data, a, b) == [1.0, 0.75]
    assert text_agreement(data, a, a) == [1.0, 1.0]


def test_a_text_design_study_predicts_before_training_then_compares(in_tmp):
    """The design kind on token data, end to end on tiny sizes, with known answers: a global network's predicted
    machine (ELS at zeros with the largest window, 2L - 1) is the ideal machine, so its predicted texts are IS's
    from the same seeds; the trained texts are the checkpoint's own from the same seeds; the report holds each
    dataset and the pooled data-size axis with the free descriptors."""
    from ablate.data import load_dataset
    from ablate.data.registry import DataConfig
    from ablate.design.study import run_design_study
    from ablate.design.text_study import run_text_design_study
    from ablate.oracle import OracleConfig, build_oracle
    from ablate.training.checkpoint import load_checkpoint
    from conftest import write_definition

    raw = {"name": "text_design", "kind": "design", "description": "tiny",
           "datasets": {"w200": {"name": "words", "n": 200}, "w300": {"name": "words", "n": 300}},
           "architectures": {"conv": {"name": "token_resnet", "depth": 1}, "full": {"name": "token_transformer",
                                                                                    "depth": 1}},
           "fixed": {"width": 8, "max_steps": 10, "measure_seeds": 8}, "objectives": {"validity": "maximize"},
           "sampler": {"name": "grid", "seed": 0}, "seeds": 6, "steps": 6}
    path = write_definition(in_tmp, raw)
    result = run_text_design_study(path, progress=False)
    report = result.report["md"].read_text()
    assert "## w200 (n = 200)" in report and "## w300 (n = 300)" in report
    assert "the data-size axis (n = 200, 300, pooled)" in report and "| receptive_field | parameters | n |" in report
    rows = json.loads(result.report["json"].read_text())
    assert {r["arch"] for r in rows["w200"]} == {"conv", "full"}
    data = load_dataset(DataConfig(name="words", n=200))
    L, V = data.shape[0], data.vocab_size
    for r in rows["w200"]:
        assert r["prediction_seeds"] == 6 and r["measure_seeds"] == 8
        assert 0.0 <= r["prediction_agreement_low"] <= r["prediction_agreement"] <= r["prediction_agreement_high"] <= 1
        texts = json.loads((in_tmp / "runs/sweeps/text_design-w200/samples" / f"trial{r['trial']:04d}-{r['arch']}.json")
                           .read_text())["texts"]
        network = load_checkpoint(r["checkpoint"]).denoiser()
        assert texts["network"] == data.decode(unmask(network, list(range(6)), L, 6).tokens)  # same seed, same sample
        if r["arch"] == "full":
            assert r["predicted_machine"] == f"els zeros k={2 * L - 1}" and r["global"]
            ideal = build_oracle(OracleConfig(machine="ideal", vocab_size=V), data.train)
            assert texts["predicted"] == data.decode(unmask(ideal, list(range(6)), L, 6).tokens)
        else:
            assert r["predicted_machine"] == "els zeros k=3" and r["receptive_field"] == 3
    with pytest.raises(ValueError, match="holds token data"):
        run_design_study(path, progress=False)
    fitted = write_definition(in_tmp, {**raw, "name": "text_design_fit", "fit": ["conv"]})
    with pytest.raises(ValueError, match="no constant to fit"):
        run_text_design_study(fitted, progress=False)
