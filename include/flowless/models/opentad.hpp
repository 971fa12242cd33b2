// flowless/models/opentad.hpp - OpenTAD's (github.com/sming256/OpenTAD)
// configs and checkpoints, read as the original code's layout.
//
// OpenTAD re-implements ActionFormer, TemporalMaxer and TriDet under other
// names and with a few numerical differences; a model trained there runs
// here with its own numbers (tests/test_opentad.cpp compares them with OpenTAD's outputs).
//
// Config: OpenTAD's merged config tree (io::read_pyconfig of configs/*.py, or
// the same tree as JSON), model.type "ActionFormer" (TemporalMaxer and TriDet below):
//   model.projection (Conv1DTransformerProj): in_channels -> input_dim,
//     out_channels -> embd_dim, arch -> backbone_arch, conv_cfg.kernel_size,
//     norm_cfg LN / none, attn_cfg.n_head / n_mha_win_size, use_abs_pe,
//     max_seq_len, path_pdrop -> droppath, conv_cfg.proj_pdrop -> dropout
//     (input_pdrop, channel dropout of the input, is a training-only step
//     flowless does not implement: inference is unaffected);
//   model.neck (FPNIdentity, LayerNorm): out_channels -> fpn_dim, num_levels;
//   model.rpn_head (ActionFormerHead): num_classes, feat_channels -> head_dim,
//     num_convs + 1 -> head_num_layers, kernel_size, cls_prior_prob,
//     prior_generator (strides must be scale_factor^l, regression_range),
//     loss_normalizer -> init_loss_norm, center_sample(_radius), label_smoothing;
//   dataset.test (else val): feature_stride * sample_stride -> feat_stride,
//     2 * offset_frames -> num_frames (seconds = (grid * stride + offset) / fps;
//     OpenTAD's fps is an annotation's frames / duration);
//   post_processing: pre_nms_thresh (0.001), pre_nms_topk (2000), nms (None:
//     no NMS) with OpenTAD's defaults for absent keys (use_soft_nms True ->
//     Gaussian Soft-NMS, method 2 only; sigma 0.5, iou_threshold 0,
//     min_score 0, max_seg_num 100, multiclass True, voting_thresh 0);
//   solver.clip_grad_norm -> clip_grad_l2norm;
//   and OpenTAD's semantics as flowless options: conv_remask true,
//   conv_norm_eps 1e-6 (current OpenTAD; a checkpoint of its first release,
//   v0.1.0, wants 1e-5: set `flowless = dict(conv_norm_eps=1e-5)` in the
//   config), pre_nms_scope
//   "video", voting_iou_weight false, inference padding to max_seq_len (or a
//   multiple of the stride x window beyond it, as its pad_data). A top-level
//   `flowless` dict overrides any of these.
// model.type "TemporalMaxer": projection TemporalMaxerProj (arch (#convs, 0,
//   #poolings), max-pooling k3 s2), neck FPNIdentity with norm_cfg GN
//   (num_groups, affine False) -> fpn_norm groupnorm, rpn_head
//   TemporalMaxerHead (its AnchorFreeSimOTAAssigner -> model.assigner, the
//   SimOTA of TemporalMaxer's code, train/simota.hpp; OpenTAD's head loss is
//   the same as TemporalMaxer's while keep_percent is 1 and confuse_weight 0,
//   as its configs set them - otherwise it normalises by the positive count,
//   TemporalMaxer by the positive weights' sum, which flowless trains with);
//   OpenTAD runs it unpadded (inference_padding "none": levels of
//   ceil(T / stride) steps, the group norm over the video's own steps).
// model.type "TriDet": projection TriDetProj (sgp_mlp_dim, sgp_win_size, k,
//   init_conv_vars, downsample_type, input_noise), rpn_head TriDetHead
//   (num_bins, boundary_kernel_size, iou_weight_power): the Trident head,
//   with the start / end logits of the padded steps left unmasked and read by
//   the decode (unmasked_boundary_logits), pre-NMS 0.001 / 2000 whatever the
//   config says (TriDet's post_processing hard-codes them).
//
// Checkpoint: OpenTAD saves {"epoch", "state_dict", "optimizer", "scheduler",
// "state_dict_ema"} from a DDP model ("module." prefixes; io::load_pth_state_dict
// strips them and picks state_dict_ema). Names map to the original code's:
//   projection.embed.i.conv.*  -> backbone.embd.i.conv.*
//   projection.embed.i.norm.*  -> backbone.embd_norm.i.*
//   projection.*               -> backbone.*
//   rpn_head.{cls,reg}_convs.i.conv.* -> {cls,reg}_head.head.i.conv.*
//   rpn_head.{cls,reg}_convs.i.norm.* -> {cls,reg}_head.norm.i.*
//   rpn_head.cls_{start,end}_convs.i.* -> {start,end}_head.head.i.conv.* / .norm.i.*
//   rpn_head.cls_{start,end}_head.* -> {start,end}_head.cls_head.conv.*
//   rpn_head.cls_head.*        -> cls_head.cls_head.conv.*
//   rpn_head.reg_head.*        -> reg_head.offset_head.conv.*
//   rpn_head.scale.l.scale     -> reg_head.scale.l.scale
//   rpn_head.loss_normalizer   -> dropped (a training statistic)
//   neck.*                     -> neck.*
// LayerNorm weights are (C) there and (1, C, 1) in the original code; the
// loader compares shapes up to singleton dimensions. Any other name is an
// Error naming it.
#pragma once

#include <cmath>
#include <map>
#include <string>

#include "flowless/core/error.hpp"
#include "flowless/io/array.hpp"
#include "flowless/io/json.hpp"

namespace flowless::models {

/// True for OpenTAD's config tree: a model dict with a projection or an rpn_head.
inline bool is_opentad_config(const json::Value& root) {
  if (!root.is_object() || !root.contains("model") || !root.at("model").is_object()) return false;
  const json::Value& m = root.at("model");
  return m.contains("projection") || m.contains("rpn_head");
}

/// True when a state dict uses OpenTAD's names (projection.*, rpn_head.*).
inline bool is_opentad_state_dict(const std::map<std::string, io::Array>& arrays) {
  for (const auto& kv : arrays)
    if (kv.first.rfind("projection.", 0) == 0 || kv.first.rfind("rpn_head.", 0) == 0) return true;
  return false;
}

namespace opentad_detail {

inline const json::Value& section(const json::Value& v, const char* key) {
  static const json::Value empty = json::Value::object();
  if (!v.is_object() || !v.contains(key) || v.at(key).is_null()) return empty;
  FLOWLESS_CHECK(v.at(key).is_object(), "'", key, "' must be a dict, found ", v.at(key).type_name());
  return v.at(key);
}

inline void copy_if(const json::Value& from, const char* from_key, json::Value& to, const char* to_key) {
  if (from.is_object() && from.contains(from_key) && !from.at(from_key).is_null()) to[to_key] = from.at(from_key);
}

}  // namespace opentad_detail

/// OpenTAD's config tree -> the original code's layout (detector_config.hpp),
/// with the flowless options that reproduce OpenTAD's numbers. `ctx` names the file.
inline json::Value opentad_to_reference_config(const json::Value& root, const std::string& ctx) {
  using json::Value;
  using opentad_detail::copy_if;
  using opentad_detail::section;
  try {
    const Value& model = section(root, "model");
    const std::string type = model.string_or("type", "");
    FLOWLESS_CHECK(type == "ActionFormer" || type == "TemporalMaxer" || type == "TriDet", "model.type '", type,
                   "': OpenTAD's ActionFormer, TemporalMaxer and TriDet are supported");
    const bool tm = type == "TemporalMaxer", td = type == "TriDet";
    const Value& proj = section(model, "projection");
    const Value& neck = section(model, "neck");
    const Value& head = section(model, "rpn_head");
    const std::string ptype = proj.string_or("type", "");
    const char* want_proj = tm ? "TemporalMaxerProj" : td ? "TriDetProj" : "Conv1DTransformerProj";
    FLOWLESS_CHECK(ptype == want_proj, "model.projection.type '", ptype, "' is not supported (", want_proj, ")");
    const std::string ntype = neck.string_or("type", "FPNIdentity");
    FLOWLESS_CHECK(ntype == "FPNIdentity", "model.neck.type '", ntype, "' is not supported (FPNIdentity)");
    const std::string htype = head.string_or("type", "");
    const char* want_head = tm ? "TemporalMaxerHead" : td ? "TriDetHead" : "ActionFormerHead";
    FLOWLESS_CHECK(htype == want_head, "model.rpn_head.type '", htype, "' is not supported (", want_head, ")");

    // Built apart and put together at the end (references into an object
    // would dangle as it grows).
    Value m = Value::object(), d = Value::object(), tr = Value::object(), te = Value::object(),
          fl = Value::object();
    m["backbone_type"] = Value(tm ? "convPooler" : td ? "SGP" : "convTransformer");
    m["fpn_type"] = Value("identity");
    copy_if(proj, "in_channels", m, "input_dim");
    copy_if(proj, "out_channels", m, "embd_dim");
    copy_if(proj, "arch", m, "backbone_arch");
    if (tm && proj.contains("arch"))
      FLOWLESS_CHECK(proj.at("arch").size() == 3 && proj.at("arch")[1].as_int() == 0,
                     "model.projection.arch of TemporalMaxerProj must be (#convs, 0, #poolings)");
    copy_if(proj, "use_abs_pe", m, "use_abs_pe");
    copy_if(proj, "max_seq_len", m, "max_seq_len");
    FLOWLESS_CHECK(!proj.bool_or("use_rel_pe", false), "model.projection.use_rel_pe is not supported");
    const Value& conv_cfg = section(proj, "conv_cfg");
    copy_if(conv_cfg, "kernel_size", m, "embd_kernel_size");
    copy_if(conv_cfg, "proj_pdrop", tr, "dropout");
    copy_if(proj, "path_pdrop", tr, "droppath");
    const Value& norm_cfg = section(proj, "norm_cfg");
    if (proj.contains("norm_cfg")) {
      const std::string nt = norm_cfg.string_or("type", "");
      FLOWLESS_CHECK(proj.at("norm_cfg").is_null() || nt == "LN", "model.projection.norm_cfg.type '", nt,
                     "' is not supported (LN or None)");
      m["embd_with_ln"] = Value(!proj.at("norm_cfg").is_null());
    }
    if (td) {  // TriDetProj and TriDetHead
      copy_if(proj, "sgp_mlp_dim", m, "sgp_mlp_dim");
      copy_if(proj, "sgp_win_size", m, "n_sgp_win_size");
      copy_if(proj, "k", m, "k");
      copy_if(proj, "init_conv_vars", m, "init_conv_vars");
      copy_if(proj, "downsample_type", m, "downsample_type");
      copy_if(proj, "input_noise", m, "input_noise");
      copy_if(head, "num_bins", m, "num_bins");
      copy_if(head, "boundary_kernel_size", m, "boudary_kernel_size");
      copy_if(head, "iou_weight_power", m, "iou_weight_power");
      m["use_trident_head"] = Value(true);
      // TriDet's post_processing hard-codes these two.
    }
    const Value& attn = section(proj, "attn_cfg");
    copy_if(attn, "n_head", m, "n_head");
    copy_if(attn, "n_mha_win_size", m, "n_mha_win_size");
    if (proj.contains("scale_factor")) m["scale_factor"] = proj.at("scale_factor");

    copy_if(neck, "out_channels", m, "fpn_dim");
    if (neck.contains("norm_cfg")) {
      const Value& nc = neck.at("norm_cfg");
      const std::string nt = nc.is_object() ? nc.string_or("type", "") : "";
      if (nt == "GN") {  // TemporalMaxer's: GroupNorm over the whole sequence, no affine parameters
        FLOWLESS_CHECK(!nc.bool_or("affine", true), "model.neck.norm_cfg: GroupNorm with affine=True is not supported");
        FLOWLESS_CHECK(nc.number_or("eps", 1e-5) == 1e-5, "model.neck.norm_cfg: GroupNorm eps other than 1e-5 is not supported");
        m["fpn_norm"] = Value("groupnorm");
        m["num_group"] = Value(nc.int_or("num_groups", 4));
      } else {
        FLOWLESS_CHECK(nc.is_null() || nt == "LN", "model.neck.norm_cfg.type '", nt,
                       "' is not supported (LN, GN or None)");
        m["fpn_with_ln"] = Value(!nc.is_null());
      }
    }

    copy_if(head, "num_classes", m, "num_classes");
    copy_if(head, "feat_channels", m, "head_dim");
    if (head.contains("num_convs")) m["head_num_layers"] = Value(head.at("num_convs").as_int() + 1);
    copy_if(head, "kernel_size", m, "head_kernel_size");
    copy_if(head, "cls_prior_prob", tr, "cls_prior_prob");
    copy_if(head, "loss_normalizer", tr, "init_loss_norm");
    copy_if(head, "center_sample", tr, "center_sample");
    copy_if(head, "center_sample_radius", tr, "center_sample_radius");
    copy_if(head, "label_smoothing", tr, "label_smoothing");
    const Value& prior = section(head, "prior_generator");
    copy_if(prior, "regression_range", m, "regression_range");
    if (prior.contains("strides")) {
      const auto& strides = prior.at("strides").as_array();
      const int64_t sf = proj.int_or("scale_factor", 2);
      for (size_t l = 0; l < strides.size(); ++l)
        FLOWLESS_CHECK(strides[l].as_int() == static_cast<int64_t>(std::llround(std::pow(double(sf), double(l)))),
                       "model.rpn_head.prior_generator.strides must be ", sf, "^l (level ", l, " has ",
                       strides[l].as_int(), ")");
      if (proj.contains("arch") && proj.at("arch").size() == 3)
        FLOWLESS_CHECK(static_cast<int64_t>(strides.size()) == proj.at("arch")[2].as_int() + 1, "model.rpn_head: ",
                       strides.size(), " prior_generator strides for ", proj.at("arch")[2].as_int() + 1, " levels");
    }
    if (neck.contains("num_levels") && proj.contains("arch") && proj.at("arch").size() == 3)
      FLOWLESS_CHECK(neck.at("num_levels").as_int() == proj.at("arch")[2].as_int() + 1, "model.neck.num_levels ",
                     neck.at("num_levels").as_int(), " does not match projection.arch (", proj.at("arch")[2].as_int() + 1,
                     " levels)");

    const Value& ds = section(root, "dataset");
    const Value& split = ds.contains("test") ? section(ds, "test") : section(ds, "val");
    if (split.contains("feature_stride"))
      d["feat_stride"] = Value(split.at("feature_stride").as_number() * split.number_or("sample_stride", 1.0));
    if (split.contains("offset_frames")) d["num_frames"] = Value(2.0 * split.at("offset_frames").as_number());

    copy_if(section(root, "solver"), "clip_grad_norm", tr, "clip_grad_l2norm");

    const Value& post = section(root, "post_processing");
    // TriDet's post_processing ignores the config's pre_nms_* and uses 0.001 / 2000.
    te["pre_nms_thresh"] = Value(td ? 0.001 : post.number_or("pre_nms_thresh", 0.001));
    te["pre_nms_topk"] = Value(td ? int64_t(2000) : post.int_or("pre_nms_topk", 2000));
    if (post.contains("nms") && post.at("nms").is_null()) {
      te["nms_method"] = Value("none");
    } else {
      const Value& nms = section(post, "nms");
      const bool soft = nms.bool_or("use_soft_nms", true);
      const int64_t method = nms.int_or("method", 2);
      FLOWLESS_CHECK(!soft || method == 2, "post_processing.nms.method ", method,
                     " is not supported (2, Gaussian Soft-NMS)");
      te["nms_method"] = Value(soft ? "soft" : "hard");
      te["nms_sigma"] = Value(nms.number_or("sigma", 0.5));
      te["iou_threshold"] = Value(nms.number_or("iou_threshold", 0.0));
      te["min_score"] = Value(nms.number_or("min_score", 0.0));
      te["max_seg_num"] = Value(nms.int_or("max_seg_num", 100));
      te["multiclass_nms"] = Value(nms.bool_or("multiclass", true));
      te["voting_thresh"] = Value(nms.number_or("voting_thresh", 0.0));
    }
    if (head.contains("assigner") && !head.at("assigner").is_null()) {
      const Value& as = head.at("assigner");
      FLOWLESS_CHECK(as.is_object(), ctx, ": model.rpn_head.assigner must be a dict");
      const std::string type = as.string_or("type", "AnchorFreeSimOTAAssigner");
      FLOWLESS_CHECK(type == "AnchorFreeSimOTAAssigner", ctx, ": model.rpn_head.assigner type '", type,
                     "' is not supported (AnchorFreeSimOTAAssigner)");
      Value a = Value::object();
      for (const auto& [k, v] : as.items())
        if (k != "type") a[k] = v;
      m["assigner"] = a;
    }
    fl["arch"] = Value(tm ? "temporalmaxer" : td ? "tridet" : "actionformer");
    if (td) fl["unmasked_boundary_logits"] = Value(true);
    // ActionFormer pads as its pad_data; TemporalMaxer runs on the video's own length.
    fl["inference_padding"] = Value(tm ? "none" : "max_seq_len");
    fl["conv_remask"] = Value(true);
    fl["conv_norm_eps"] = Value(1e-6);
    fl["pre_nms_scope"] = Value("video");
    fl["voting_iou_weight"] = Value(false);
    const Value& user = section(root, "flowless");
    for (const auto& [k, v] : user.items()) fl[k] = v;
    Value out = Value::object();
    out["model"] = m;
    out["dataset"] = d;
    out["train_cfg"] = tr;
    out["test_cfg"] = te;
    out["flowless"] = fl;
    return out;
  } catch (const Error& e) {
    const std::string what = e.what();
    if (what.rfind(ctx, 0) == 0) throw;
    FLOWLESS_FAIL(ctx, ": OpenTAD config: ", what);
  }
}

/// OpenTAD parameter names -> the original code's (see the file comment).
inline std::map<std::string, io::Array> opentad_to_reference_names(const std::map<std::string, io::Array>& in,
                                                                   const std::string& ctx) {
  std::map<std::string, io::Array> out;
  auto starts = [](const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; };
  // "<prefix><i>.<kind>.<rest>" -> {i, kind, rest}; false if it does not match.
  auto split3 = [](const std::string& s, size_t from, std::string& idx, std::string& kind, std::string& rest) {
    const size_t a = s.find('.', from);
    if (a == std::string::npos) return false;
    const size_t b = s.find('.', a + 1);
    if (b == std::string::npos) return false;
    idx = s.substr(from, a - from);
    kind = s.substr(a + 1, b - a - 1);
    rest = s.substr(b + 1);
    return !idx.empty() && idx.find_first_not_of("0123456789") == std::string::npos;
  };
  for (const auto& [name, arr] : in) {
    std::string to, idx, kind, rest;
    if (starts(name, "projection.embed.") && split3(name, 17, idx, kind, rest) && (kind == "conv" || kind == "norm")) {
      to = kind == "conv" ? "backbone.embd." + idx + ".conv." + rest : "backbone.embd_norm." + idx + "." + rest;
    } else if (starts(name, "projection.")) {
      to = "backbone." + name.substr(11);
    } else if (starts(name, "neck.")) {
      to = name;
    } else if (name == "rpn_head.loss_normalizer") {
      continue;
    } else if (starts(name, "rpn_head.")) {
      const std::string r = name.substr(9);
      static const std::pair<const char*, const char*> trunks[] = {
          {"cls_convs.", "cls_head"}, {"reg_convs.", "reg_head"}, {"cls_start_convs.", "start_head"},
          {"cls_end_convs.", "end_head"}};
      for (const auto& [from, head] : trunks)
        if (starts(r, from) && split3(r, std::string(from).size(), idx, kind, rest) && (kind == "conv" || kind == "norm"))
          to = kind == "conv" ? std::string(head) + ".head." + idx + ".conv." + rest
                              : std::string(head) + ".norm." + idx + "." + rest;
      if (to.empty()) {
        if (starts(r, "cls_head.")) to = "cls_head.cls_head.conv." + r.substr(9);
        else if (starts(r, "cls_start_head.")) to = "start_head.cls_head.conv." + r.substr(15);
        else if (starts(r, "cls_end_head.")) to = "end_head.cls_head.conv." + r.substr(13);
        else if (starts(r, "reg_head.")) to = "reg_head.offset_head.conv." + r.substr(9);
        else if (starts(r, "scale.")) to = "reg_head." + r;
      }
    }
    FLOWLESS_CHECK(!to.empty(), ctx, ": parameter '", name, "' is not one of OpenTAD's ActionFormer / TemporalMaxer / TriDet parameters");
    FLOWLESS_CHECK(out.find(to) == out.end(), ctx, ": parameters map to '", to, "' twice");
    out.emplace(to, arr);
  }
  return out;
}

}  // namespace flowless::models
