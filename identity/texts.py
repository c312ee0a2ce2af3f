"""What the doctor's page says at each verification step and failure (Chinese first)."""

from __future__ import annotations

CHALLENGE_TEXT: dict[str, tuple[str, str]] = {
    "blink": ("请眨眼一次", "Please blink once"),
    "turn_left": ("请缓慢向左转头", "Please turn your head slowly to your left"),
    "turn_right": ("请缓慢向右转头", "Please turn your head slowly to your right"),
}

STEP_TEXT: dict[str, tuple[str, str]] = {
    "waiting_video": ("正在等待您的视频画面…", "Waiting for your camera picture…"),
    "looking": ("正在核验医生身份，请正对摄像头",
                "Verifying your identity: please face the camera"),
    "verified": ("身份核验通过，可以开始问诊", "Identity verified: you may start the consultation"),
    "locked": ("身份核验连续3次未通过，本次问诊已锁定，已通知运维人员",
               "Verification failed 3 times: locked for this consultation; operations notified"),
}

FAILURE_TEXT: dict[str, tuple[str, str]] = {
    "not_enrolled": ("您尚未登记人脸照片，请联系管理员",
                     "No enrolled face photo: contact the administrator"),
    "no_face": ("未检测到人脸，请正对摄像头并保持光线充足",
                "No face seen: face the camera in good light"),
    "several_faces": ("画面中有多人，请确保只有您本人在镜头前",
                      "Several people on camera: only you may be in front of the camera"),
    "not_registered": ("画面中的人与登记的医生不符",
                       "The person on camera is not the registered doctor"),
    "challenge_not_done": ("未在规定时间内完成指定动作",
                           "The requested action was not seen in time"),
    "no_video": ("没有收到视频画面", "No video received"),
}

PAUSED_TEXT = ("医生身份待重新确认，医生画面和声音已暂停",
               "The doctor's identity is being re-checked: their picture and sound are paused")
RESUMED_TEXT = ("已重新确认医生本人，问诊继续", "The doctor is confirmed again: the call goes on")

ASSURANCE_TEXT: dict[str, tuple[str, str]] = {
    "no_face": ("问诊中未检测到医生本人，请回到镜头前", "Doctor not seen on camera: please return"),
    "several_faces": ("问诊中画面出现多人", "Several people seen on the doctor's camera"),
    "not_registered": ("问诊中镜头前的人与登记医生不符",
                       "The person on the doctor's camera is not the registered doctor"),
    "no_video": ("没有收到医生的视频画面", "No video from the doctor"),
}
