// The one header a Tide user includes.
#pragma once

#include "autograd/autograd.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "nn/module.h"
#include "nn/optim.h"
#include "backends/cpu/threads.h"
#include "tensor/creation.h"
#include "tensor/print.h"
#include "tensor/tensor.h"
