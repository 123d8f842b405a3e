// Training utilities: optimizers, gradient clipping, learning-rate schedules
// and parameter EMA (one include for all of them).
#pragma once

#include "nn/ema.h"
#include "nn/lr_scheduler.h"
#include "nn/optimizer.h"
