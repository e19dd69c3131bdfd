// Precompiled header: the heavy third-party headers every translation unit pulls in.
#pragma once
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>
