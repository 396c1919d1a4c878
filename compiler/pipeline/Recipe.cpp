#include "compiler/pipeline/Recipe.h"

#include "dialects/lathe/LatheDialect.h"
#include "passes/Passes.h"
#include "passes/quantize/QuantizeUtils.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

#include <yaml-cpp/yaml.h>

#include <set>

namespace lathe::pipeline {

std::string QuantizeSettings::describe() const {
  std::string s = format;
  const bool storage = format == "bf16" || format == "fp16";
  if (!storage) s += " g" + (groupSize ? std::to_string(groupSize) : std::string(format == "int8" ? "channel" : "32"));
  if (format == "int4" || format == "int3") s += symmetric ? " sym" : " asym";
  if (int8Activations) s += " int8-activations";
  if (format == "w8a8") {
    s = std::string(smoothAlpha ? "smoothquant a" + std::to_string(*smoothAlpha).substr(0, 4) + " + " : "") + "w8a8 " + method +
        " activations " + actMode;
    if (actMode == "static") s += " " + actGranularity + (actGranularity == "tensor" ? " " + actCalibration : "");
    return s;
  }
  if (!storage) s += " " + method;
  return s;
}

namespace {

struct RecipeError {
  std::string message;
};

int lineOf(const YAML::Node &node) { return node.Mark().line + 1; }

[[noreturn]] void failAt(const YAML::Node &node, const std::string &message) {
  throw RecipeError{"line " + std::to_string(lineOf(node)) + ": " + message};
}

void onlyKeys(const YAML::Node &map, const std::set<std::string> &allowed, const std::string &where) {
  if (!map.IsMap()) failAt(map, where + " must be a mapping");
  for (const auto &kv : map) {
    std::string key = kv.first.as<std::string>();
    if (!allowed.count(key)) {
      std::string list;
      for (const auto &a : allowed) list += (list.empty() ? "" : ", ") + a;
      failAt(kv.first, "unknown key '" + key + "' in " + where + " (expected one of: " + list + ")");
    }
  }
}

template <class T> T scalar(const YAML::Node &node, const std::string &what) {
  try {
    return node.as<T>();
  } catch (const YAML::Exception &) {
    failAt(node, what + " has an invalid value '" + (node.IsScalar() ? node.Scalar() : std::string("(not a scalar)")) + "'");
  }
}

QuantizeSettings parseQuantize(const YAML::Node &node, const std::string &where) {
  onlyKeys(node, {"format", "group_size", "symmetric", "method", "dampening", "act_order", "activations", "smoothquant", "compensation",
                  "int8_activations"},
           where);
  QuantizeSettings q;
  if (node["format"]) q.format = scalar<std::string>(node["format"], "format");
  if (q.format != "int8" && q.format != "int4" && q.format != "int3" && q.format != "bf16" && q.format != "fp16" &&
      q.format != "w8a8")
    failAt(node["format"], "format '" + q.format + "' is not one of int8, int4, int3, bf16, fp16, w8a8");
  const bool w8a8 = q.format == "w8a8";
  const bool storage = q.format == "bf16" || q.format == "fp16"; // weights stored as floats: no grid
  if (YAML::Node a = node["activations"]) {
    if (!w8a8) failAt(a, "'activations' applies to format w8a8 only (" + q.format + " keeps f32 activations)");
    onlyKeys(a, {"mode", "granularity", "calibration", "percentile"}, "'activations'");
    if (a["mode"]) q.actMode = scalar<std::string>(a["mode"], "mode");
    if (q.actMode != "dynamic" && q.actMode != "static") failAt(a["mode"], "activation mode '" + q.actMode + "' is not dynamic or static");
    const bool isStatic = q.actMode == "static";
    for (const char *key : {"granularity", "calibration", "percentile"})
      if (a[key] && !isStatic) failAt(a[key], std::string("'") + key + "' applies to static activation scales (mode: static)");
    if (a["granularity"]) q.actGranularity = scalar<std::string>(a["granularity"], "granularity");
    if (q.actGranularity != "tensor" && q.actGranularity != "channel")
      failAt(a["granularity"], "granularity '" + q.actGranularity + "' is not tensor or channel");
    if (a["calibration"]) q.actCalibration = scalar<std::string>(a["calibration"], "calibration");
    if (q.actCalibration != "minmax" && q.actCalibration != "percentile")
      failAt(a["calibration"], "calibration '" + q.actCalibration + "' is not minmax or percentile");
    if (q.actCalibration == "percentile" && q.actGranularity == "channel")
      failAt(a["calibration"], "per-channel activation scales are min-max; percentile applies to granularity tensor");
    if (a["percentile"]) {
      if (q.actCalibration != "percentile") failAt(a["percentile"], "'percentile' needs calibration: percentile");
      q.actPercentile = scalar<double>(a["percentile"], "percentile");
      if (!(q.actPercentile > 0 && q.actPercentile <= 100)) failAt(a["percentile"], "percentile must be in (0, 100]");
    }
  }
  if (YAML::Node sq = node["smoothquant"]) {
    if (!w8a8) failAt(sq, "'smoothquant' applies to format w8a8 only (it prepares activations for int8)");
    onlyKeys(sq, {"alpha"}, "'smoothquant'");
    q.smoothAlpha = sq["alpha"] ? scalar<double>(sq["alpha"], "alpha") : 0.5;
    if (!(*q.smoothAlpha >= 0 && *q.smoothAlpha <= 1)) failAt(sq["alpha"], "alpha must be in [0, 1]");
  }
  const bool subByte = q.format == "int4" || q.format == "int3";
  if (node["group_size"]) {
    q.groupSize = scalar<int64_t>(node["group_size"], "group_size");
    if (storage) failAt(node["group_size"], q.format + " has no group_size");
    if (w8a8) failAt(node["group_size"], "w8a8 has one weight scale per output channel; it takes no group_size");
    if (q.groupSize < 0) failAt(node["group_size"], "group_size must be >= 0");
    if (subByte && (q.groupSize == 0 || q.groupSize % 32))
      failAt(node["group_size"], q.format + " needs a group_size that is a positive multiple of 32, got " + std::to_string(q.groupSize));
  } else if (subByte) {
    q.groupSize = 32;
  }
  if (node["symmetric"]) {
    q.symmetric = scalar<bool>(node["symmetric"], "symmetric");
    if (!subByte) failAt(node["symmetric"], q.format + " is always symmetric; 'symmetric' applies to int4 and int3 only");
  }
  if (node["method"]) {
    q.method = scalar<std::string>(node["method"], "method");
    if (q.method != "rtn" && q.method != "gptq" && q.method != "awq" && q.method != "awq+gptq")
      failAt(node["method"], "unknown method '" + q.method + "' (expected rtn, gptq, awq or awq+gptq)");
    if (storage) failAt(node["method"], q.format + " is a storage format; it takes no method");
    if (w8a8 && q.method != "rtn" && q.method != "gptq")
      failAt(node["method"], "w8a8 takes method rtn or gptq (for activation-aware scales use 'smoothquant')");
    if (w8a8 && q.method == "gptq" && q.actMode == "static" && q.actGranularity == "channel")
      failAt(node["method"], "gptq with per-channel static activation scales is not supported");
  }
  const bool gptq = q.method == "gptq" || q.method == "awq+gptq";
  if (node["dampening"]) {
    q.dampening = scalar<double>(node["dampening"], "dampening");
    if (!gptq) failAt(node["dampening"], "'dampening' applies to method gptq only");
    if (q.dampening < 0 || q.dampening > 1) failAt(node["dampening"], "dampening must be in [0, 1]");
  }
  if (node["act_order"]) {
    q.activationOrder = scalar<bool>(node["act_order"], "act_order");
    if (!gptq) failAt(node["act_order"], "'act_order' applies to method gptq only");
  }
  if (YAML::Node a = node["int8_activations"]) {
    q.int8Activations = scalar<bool>(a, "int8_activations");
    if (q.int8Activations && q.format != "int8" && q.format != "int4")
      failAt(a, "'int8_activations' applies to int8 and int4 weights (" + q.format + " keeps f32 activations; w8a8 has its own 'activations')");
    if (q.int8Activations && q.format == "int8" && q.groupSize % 32)
      failAt(a, "'int8_activations' needs int8 groups in multiples of 32 (or group_size 0), got " + std::to_string(q.groupSize));
  }
  if (YAML::Node c = node["compensation"]) {
    onlyKeys(c, {"rank"}, "'compensation'");
    if (storage || w8a8) failAt(c, "'compensation' applies to int8, int4 and int3 weights");
    if (!c["rank"]) failAt(c, "'compensation' needs a rank");
    q.compensationRank = scalar<int64_t>(c["rank"], "rank");
    if (q.compensationRank < 1) failAt(c["rank"], "the compensation rank must be at least 1");
  }
  return q;
}

PruneSettings parsePrune(const YAML::Node &node, const std::string &where) {
  onlyKeys(node, {"method", "sparsity", "pattern", "dampening", "block_size"}, where);
  PruneSettings p;
  if (node["method"]) p.method = scalar<std::string>(node["method"], "method");
  if (p.method != "magnitude" && p.method != "wanda" && p.method != "sparsegpt")
    failAt(node["method"], "unknown pruning method '" + p.method + "' (expected magnitude, wanda or sparsegpt)");
  if (node["pattern"]) {
    p.pattern = scalar<std::string>(node["pattern"], "pattern");
    if (p.pattern != "2:4" && p.pattern != "4:8") failAt(node["pattern"], "pattern '" + p.pattern + "' is not 2:4 or 4:8");
    if (node["sparsity"]) failAt(node["sparsity"], "an N:M pattern fixes the sparsity (50 %); give 'sparsity' or 'pattern', not both");
  }
  if (node["sparsity"]) {
    p.sparsity = scalar<double>(node["sparsity"], "sparsity");
    if (!(p.sparsity > 0 && p.sparsity < 1)) failAt(node["sparsity"], "sparsity must be in (0, 1)");
  }
  for (const char *key : {"dampening", "block_size"})
    if (node[key] && p.method != "sparsegpt") failAt(node[key], std::string("'") + key + "' applies to method sparsegpt only");
  if (node["dampening"]) {
    p.dampening = scalar<double>(node["dampening"], "dampening");
    if (p.dampening < 0 || p.dampening > 1) failAt(node["dampening"], "dampening must be in [0, 1]");
  }
  if (node["block_size"]) {
    p.blockSize = scalar<int64_t>(node["block_size"], "block_size");
    if (p.blockSize < 8) failAt(node["block_size"], "block_size must be at least 8");
  }
  return p;
}

LowRankSettings parseLowRank(const YAML::Node &node, const std::string &where) {
  onlyKeys(node, {"method", "param_ratio", "energy", "rank"}, where);
  LowRankSettings l;
  if (node["method"]) l.method = scalar<std::string>(node["method"], "method");
  if (l.method != "svd" && l.method != "asvd") failAt(node["method"], "unknown low-rank method '" + l.method + "' (expected svd or asvd)");
  int given = 0;
  for (const char *key : {"param_ratio", "energy", "rank"}) given += bool(node[key]);
  if (given > 1) failAt(node, "give one of param_ratio, energy and rank");
  if (node["param_ratio"]) {
    l.paramRatio = scalar<double>(node["param_ratio"], "param_ratio");
    if (!(l.paramRatio > 0 && l.paramRatio < 1)) failAt(node["param_ratio"], "param_ratio must be in (0, 1)");
  }
  if (node["energy"]) {
    l.energy = scalar<double>(node["energy"], "energy");
    if (!(l.energy > 0 && l.energy <= 1)) failAt(node["energy"], "energy must be in (0, 1]");
  }
  if (node["rank"]) {
    l.rank = scalar<int64_t>(node["rank"], "rank");
    if (l.rank < 1) failAt(node["rank"], "rank must be at least 1");
  }
  return l;
}

StructuredSettings parseStructured(const YAML::Node &node) {
  onlyKeys(node, {"ffn", "heads", "criterion", "seed"}, "'structured'");
  StructuredSettings s;
  for (const char *key : {"ffn", "heads"})
    if (node[key]) {
      double v = scalar<double>(node[key], key);
      if (!(v >= 0 && v < 1)) failAt(node[key], std::string(key) + " must be in [0, 1)");
      (std::string(key) == "ffn" ? s.ffn : s.heads) = v;
    }
  if (s.ffn == 0 && s.heads == 0) failAt(node, "'structured' removes nothing: give ffn and/or heads");
  if (node["criterion"]) s.criterion = scalar<std::string>(node["criterion"], "criterion");
  if (s.criterion != "importance" && s.criterion != "weight-norm" && s.criterion != "random")
    failAt(node["criterion"], "criterion '" + s.criterion + "' is not importance, weight-norm or random");
  if (node["seed"]) s.seed = scalar<int64_t>(node["seed"], "seed");
  return s;
}

/// Stacking rules for one layer's prune, low-rank and quantize settings.
void checkStack(const YAML::Node &at, const std::optional<PruneSettings> &p, const std::optional<LowRankSettings> &l,
                const std::optional<QuantizeSettings> &q) {
  if (p && l) failAt(at, "prune and lowrank on the same layers: the factors of a pruned weight are dense again; pick one");
  if (p && !p->pattern.empty() && q &&
      !(q->format == "int4" && q->symmetric && q->method == "rtn" && !q->compensationRank && !q->int8Activations))
    failAt(at, "N:M pruning stacks with symmetric int4 rtn quantization only (its kept values become int4); got " + q->describe());
  if (p && q && q->calibrated())
    failAt(at, "a pruned layer is quantized with rtn (the statistics were gathered on the unpruned weights); got method " + q->method);
}

} // namespace

std::optional<Recipe> loadRecipe(const std::string &path, std::string &error) {
  Recipe recipe;
  recipe.path = path;
  try {
    YAML::Node root = YAML::LoadFile(path);
    if (!root.IsMap()) throw RecipeError{"line 1: a recipe is a mapping with 'quantize' and/or 'overrides'"};
    onlyKeys(root, {"name", "description", "quantize", "embeddings", "overrides", "prune", "lowrank", "structured"}, "the recipe");
    if (root["name"]) recipe.name = scalar<std::string>(root["name"], "name");
    if (root["quantize"]) recipe.defaults = parseQuantize(root["quantize"], "'quantize'");
    if (root["prune"]) recipe.prune = parsePrune(root["prune"], "'prune'");
    if (root["lowrank"]) recipe.lowrank = parseLowRank(root["lowrank"], "'lowrank'");
    if (root["structured"]) recipe.structured = parseStructured(root["structured"]);
    checkStack(root, recipe.prune, recipe.lowrank, recipe.defaults);
    if (root["embeddings"]) {
      recipe.embeddings = parseQuantize(root["embeddings"], "'embeddings'");
      if (recipe.embeddings->format != "int8") failAt(root["embeddings"], "embedding tables are quantized to int8 only");
    }
    if (YAML::Node overrides = root["overrides"]) {
      if (!overrides.IsSequence()) failAt(overrides, "'overrides' must be a list");
      for (const YAML::Node &item : overrides) {
        onlyKeys(item, {"match", "skip", "quantize", "prune", "lowrank"}, "an override");
        RecipeRule rule;
        rule.line = lineOf(item);
        if (!item["match"]) failAt(item, "an override needs 'match' (a node-name pattern)");
        rule.match = scalar<std::string>(item["match"], "match");
        if (item["skip"]) rule.skip = scalar<bool>(item["skip"], "skip");
        const bool acts = item["quantize"] || item["prune"] || item["lowrank"];
        if (rule.skip && acts) failAt(item, "an override cannot both skip and compress");
        if (!rule.skip && !acts) failAt(item, "an override needs 'quantize', 'prune', 'lowrank' or 'skip: true'");
        if (item["quantize"]) rule.quantize = parseQuantize(item["quantize"], "an override's 'quantize'");
        if (item["prune"]) rule.prune = parsePrune(item["prune"], "an override's 'prune'");
        if (item["lowrank"]) rule.lowrank = parseLowRank(item["lowrank"], "an override's 'lowrank'");
        checkStack(item, rule.prune ? rule.prune : recipe.prune, rule.lowrank ? rule.lowrank : recipe.lowrank,
                   rule.quantize ? rule.quantize : recipe.defaults);
        recipe.overrides.push_back(rule);
      }
    }
    if (!recipe.defaults && !recipe.embeddings && recipe.overrides.empty() && !recipe.prune && !recipe.lowrank && !recipe.structured)
      throw RecipeError{"line 1: the recipe compresses nothing (no 'quantize', 'prune', 'lowrank', 'structured' or 'overrides')"};
  } catch (const RecipeError &e) {
    error = "recipe '" + path + "': " + e.message;
    return std::nullopt;
  } catch (const YAML::BadFile &) {
    error = "recipe '" + path + "': cannot read the file";
    return std::nullopt;
  } catch (const YAML::Exception &e) {
    error = "recipe '" + path + "': line " + std::to_string(e.mark.line + 1) + ": " + e.msg;
    return std::nullopt;
  }
  return recipe;
}

mlir::LogicalResult checkRecipeMatches(mlir::ModuleOp module, const Recipe &recipe, std::string &error) {
  std::vector<std::string> names;
  module.walk([&](ir::LinearOp op) { names.push_back(quantize::opName(op)); });
  for (const RecipeRule &rule : recipe.overrides) {
    bool any = false;
    for (const std::string &name : names) any |= quantize::matchesAny(name, {rule.match}, false);
    if (!any) {
      error = "recipe '" + recipe.path + "': line " + std::to_string(rule.line) + ": pattern '" + rule.match +
              "' matches no linear layer (names look like '" + (names.empty() ? std::string("?") : names.front()) + "')";
      return mlir::failure();
    }
  }
  return mlir::success();
}

bool Recipe::needsCalibrationData() const {
  if (defaults && defaults->needsData()) return true;
  if ((prune && prune->needsGram()) || (lowrank && lowrank->needsGram()) || (structured && structured->needsGram())) return true;
  for (const RecipeRule &rule : overrides)
    if (!rule.skip && ((rule.quantize && rule.quantize->needsData()) || (rule.prune && rule.prune->needsGram()) ||
                       (rule.lowrank && rule.lowrank->needsGram())))
      return true;
  return false;
}

bool Recipe::needsGram() const {
  if (defaults && defaults->usesGram()) return true;
  if ((prune && prune->needsGram()) || (lowrank && lowrank->needsGram()) || (structured && structured->needsGram())) return true;
  for (const RecipeRule &rule : overrides)
    if (!rule.skip && ((rule.quantize && rule.quantize->usesGram()) || (rule.prune && rule.prune->needsGram()) ||
                       (rule.lowrank && rule.lowrank->needsGram())))
      return true;
  return false;
}

void buildCompressPipeline(mlir::OpPassManager &pm, const Recipe &recipe, bool onlyCalibrated) {
  auto &fn = pm.nest<mlir::func::FuncOp>();
  std::vector<std::string> skipped;
  for (const RecipeRule &rule : recipe.overrides)
    if (rule.skip) skipped.push_back(rule.match);
  if (recipe.structured && !onlyCalibrated) {
    passes::StructuredPruneOptions options;
    options.ffn = recipe.structured->ffn;
    options.heads = recipe.structured->heads;
    options.criterion = recipe.structured->criterion;
    options.seed = recipe.structured->seed;
    options.exclude = skipped;
    fn.addPass(passes::createStructuredPrune(options));
  }
  // Each stage: the overrides that set it (on their layers), then the default.
  // Overrides come first, and a layer a stage already handled is left alone by
  // its later passes, so the first match wins.
  auto addPrune = [&](const PruneSettings &p, std::vector<std::string> include) {
    passes::PruneOptions options;
    options.method = p.method;
    options.sparsity = p.sparsity;
    options.pattern = p.pattern;
    options.dampening = p.dampening;
    options.blockSize = p.blockSize;
    options.include = include;
    options.exclude = skipped;
    options.onlyCalibrated = onlyCalibrated;
    fn.addPass(passes::createPrune(options));
  };
  auto addLowRank = [&](const LowRankSettings &l, std::vector<std::string> include) {
    passes::LowRankOptions options;
    options.method = l.method;
    options.rank = l.rank;
    options.energy = l.energy;
    options.paramRatio = l.paramRatio;
    options.include = include;
    options.exclude = skipped;
    options.onlyCalibrated = onlyCalibrated;
    fn.addPass(passes::createLowRank(options));
  };
  auto addQuantize = [&](const QuantizeSettings &q, std::vector<std::string> include) {
    const bool awq = q.method == "awq" || q.method == "awq+gptq";
    if (awq) {
      passes::AwqScaleOptions scale;
      scale.format = q.format;
      scale.groupSize = q.groupSize;
      scale.symmetric = q.symmetric;
      scale.include = include;
      scale.exclude = skipped;
      scale.onlyCalibrated = onlyCalibrated;
      fn.addPass(passes::createAwqScale(scale));
    }
    if (q.smoothAlpha) {
      passes::SmoothQuantOptions smooth;
      smooth.alpha = *q.smoothAlpha;
      smooth.include = include;
      smooth.exclude = skipped;
      smooth.onlyCalibrated = onlyCalibrated;
      fn.addPass(passes::createSmoothQuant(smooth));
    }
    passes::QuantizeWeightsOptions options;
    options.format = q.format;
    options.groupSize = q.groupSize;
    options.actMode = q.actMode;
    options.actGranularity = q.actGranularity;
    options.actCalibration = q.actCalibration;
    options.actPercentile = q.actPercentile;
    options.symmetric = q.symmetric;
    options.method = q.method == "awq+gptq" ? "gptq" : q.method;
    options.dampening = q.dampening;
    options.activationOrder = q.activationOrder;
    options.compensationRank = q.compensationRank;
    options.int8Activations = q.int8Activations;
    options.onlyCalibrated = onlyCalibrated;
    // A low-rank layer's factors are named "<layer>.lr_a" and "<layer>": a pattern matching the layer covers both.
    std::vector<std::string> exclude;
    for (const std::string &s : skipped) exclude.push_back(s), exclude.push_back(s + ".lr_a");
    if (!include.empty()) include.push_back(include.front() + ".lr_a");
    options.include = include;
    options.exclude = exclude;
    fn.addPass(passes::createQuantizeWeights(options));
  };
  for (const RecipeRule &rule : recipe.overrides)
    if (!rule.skip && rule.prune) addPrune(*rule.prune, {rule.match});
  if (recipe.prune) addPrune(*recipe.prune, {});
  for (const RecipeRule &rule : recipe.overrides)
    if (!rule.skip && rule.lowrank) addLowRank(*rule.lowrank, {rule.match});
  if (recipe.lowrank) addLowRank(*recipe.lowrank, {});
  for (const RecipeRule &rule : recipe.overrides)
    if (!rule.skip && rule.quantize) addQuantize(*rule.quantize, {rule.match});
  if (recipe.defaults) addQuantize(*recipe.defaults, {});
  fn.addPass(passes::createPackSparse());
  if (recipe.embeddings && !onlyCalibrated) {
    passes::QuantizeWeightsOptions options;
    options.format = "int8";
    options.groupSize = recipe.embeddings->groupSize;
    options.targets = "embedding";
    options.exclude = skipped;
    fn.addPass(passes::createQuantizeWeights(options));
  }
}

} // namespace lathe::pipeline
