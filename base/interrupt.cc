#include "base/interrupt.h"

namespace engram::base {

// Out of line: the key function that gives the vtable one home.
Interrupt::~Interrupt() = default;

}  // namespace engram::base
