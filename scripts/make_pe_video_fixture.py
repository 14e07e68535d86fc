"""Make tests/data/pe_video: tiny Perception Encoder video checkpoints and transformers' own outputs for them.

Needs timm, hence torchvision, which cannot be installed beside vidtag's torch: run it in a scratch venv,
  python -m venv /tmp/pe && /tmp/pe/bin/pip install torch==2.14.1 torchvision==0.29.1 transformers==5.24.0 timm==1.0.29
  /tmp/pe/bin/python scripts/make_pe_video_fixture.py tests/data/pe_video
It builds a tiny random `PeVideoModel` whose frame encoder is timm's real `vit_pe_core_*` Eva (through
transformers' TimmWrapper), saves it (`pe_video_tiny`), records its forward pass on a random clip and three
labels (`expected.safetensors`), and saves the same weights as the video branch of a tiny `PeAudioVideoModel`
(`pe_av_tiny`, the published checkpoints' layout), keeping only the tensors vidtag reads.
"""

import json
import shutil
import sys
from pathlib import Path

import timm
import torch
import transformers
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import PeAudioVideoConfig, PeAudioVideoModel, PeVideoConfig, PeVideoModel, PreTrainedTokenizerFast

root = Path(sys.argv[1])
out = root / "pe_video_tiny"
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
# tiny ModernBERT-style tokenizer: BPE trained on a few sentences, [CLS] x [SEP]
tok = Tokenizer(models.BPE(unk_token="[UNK]"))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
corpus = ["a video of a dog", "a red car at night", "a wedding", "people dancing at a concert",
          "a drone shot over the sea", "an interview", "archival black-and-white footage"] * 4
trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
tok.train_from_iterator(corpus, trainer)
tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                               pad_token="[PAD]", mask_token="[MASK]", model_max_length=64)
vocab = tok.get_vocab_size()
config = PeVideoConfig(
    text_config=dict(vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                     num_attention_heads=2, max_position_embeddings=64, pad_token_id=3, cls_token_id=1,
                     sep_token_id=2, bos_token_id=1, eos_token_id=2, global_attn_every_n_layers=2,
                     local_attention=16),
    video_config=dict(
        vision_config=dict(architecture="vit_pe_core_tiny_patch16_384",
                           model_args=dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                                           ref_feat_shape=[6, 6]),
                           num_labels=24),
        hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2, head_dim=16))
model = PeVideoModel(config).eval()
with torch.no_grad():  # give the zero-initialised parameters values, so the test sees them
    for name, p in model.named_parameters():  # every parameter random, scaled to keep activations O(1)
        if p.dim() >= 2:
            p.copy_(torch.randn_like(p) / p[0].numel() ** 0.5)
        elif "norm" in name and name.endswith("weight"):
            p.copy_(1 + 0.1 * torch.randn_like(p))
        else:
            p.copy_(0.1 * torch.randn_like(p))
    model.text_video_logit_scale.fill_(2.5)
    model.text_video_logit_bias.fill_(-1.0)
enc = model.video_encoder.embedder.vision_model
print("frame encoder:", type(enc).__name__, type(enc.timm_model).__name__, enc.timm_model.patch_embed.img_size,
      "num_labels", config.video_config.vision_config.num_labels)
model.save_pretrained(out, safe_serialization=True)
fast.save_pretrained(out)
json.dump({"video_processor_type": "PeVideoVideoProcessor", "do_sample_frames": True, "num_frames": 4,
           "size": {"height": 32, "width": 32}, "do_normalize": True, "do_resize": True, "do_rescale": True,
           "do_convert_rgb": True, "image_mean": [0.5] * 3, "image_std": [0.5] * 3},
          open(out / "video_preprocessor_config.json", "w"), indent=2)

labels = ["a dog", "a red car at night", "wedding"]
pixels = torch.randn(2, 4, 3, 32, 32)
batch = fast(labels, padding=True, return_tensors="pt")
with torch.no_grad():
    o = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], pixel_values_videos=pixels)
    frames = enc(pixels.flatten(0, 1)).logits
    # reload from disk: what was saved is what was run
    again = PeVideoModel.from_pretrained(out, config=config).eval()  # the saved config drops num_labels (transformers 5.24)
    o2 = again(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], pixel_values_videos=pixels)
    print("reload diff", (o2.logits_video_text - o.logits_video_text).abs().max().item())
save_file({"pixel_values_videos": pixels.contiguous(), "input_ids": batch["input_ids"].contiguous(),
           "attention_mask": batch["attention_mask"].contiguous(),
           "frame_logits": frames.contiguous(), "video_embeds": o.video_embeds.contiguous(),
           "text_embeds": o.text_video_embeds.contiguous(), "logits": o.logits_video_text.contiguous()},
          str(root / "expected.safetensors"))
json.dump({"labels": labels, "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                                           "timm": timm.__version__}},
          open(root / "expected.json", "w"), indent=2)
print("logits", o.logits_video_text)

# the published layout: the same weights as the video branch of a PeAudioVideoModel (text tower shared)
video = config.video_config.to_dict()
video["vision_config"]["num_labels"] = config.video_config.vision_config.num_labels  # to_dict drops it (5.24)
both = PeAudioVideoConfig(text_config=config.text_config.to_dict(), audio_video_config=dict(
    video_config=video,
    audio_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2, head_dim=16),
    hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2, head_dim=16))
full = PeAudioVideoModel(both).eval()
own = full.state_dict()
with torch.no_grad():
    for k, v in model.state_dict().items():
        own["video_model." + k].copy_(v)
        if k.startswith("text_model."):
            own[k].copy_(v)
av = root / "pe_av_tiny"
full.save_pretrained(av)
state = load_file(str(av / "model.safetensors"))
save_file({k: v for k, v in state.items() if k.startswith(("video_model.", "text_model."))},
          str(av / "model.safetensors"), metadata={"format": "pt"})
for name in ("tokenizer.json", "tokenizer_config.json", "video_preprocessor_config.json"):
    shutil.copy(out / name, av / name)

# the model's own video processor (torchvision) on a smooth 40 x 48 video, for vidtag's torch preprocessing
import numpy as np  # noqa: E402
from transformers import PeVideoVideoProcessor  # noqa: E402

yy, xx = np.mgrid[0:40, 0:48].astype(np.float32)
video = np.stack([np.stack([127 + 100 * np.sin(xx / 7 + t + c) * np.cos(yy / 9 - c) for c in range(3)], -1)
                  for t in range(4)]).round().clip(0, 255).astype(np.uint8)
processor = PeVideoVideoProcessor.from_pretrained(out)
processed = processor(video, return_tensors="pt", do_sample_frames=False)["pixel_values_videos"][0]
save_file({"video": torch.from_numpy(video), "pixel_values_videos": processed.contiguous()},
          str(root / "processor.safetensors"))
